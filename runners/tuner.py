"""Ray Tune wiring: cluster, resources, searcher, scheduler and the Tuner (new or restored)."""
from __future__ import annotations

import math
import socket
from dataclasses import dataclass
from pathlib import Path

from core.errors import ConfigError
from core.record import DIVERGED_KEY, RunSettings
from runners.trial import run_trial
from search_spaces.space import SearchSpace


@dataclass(frozen=True)
class Resources:
    cpus_per_trial: float
    gpus_per_trial: float
    workers: int
    max_concurrent: int
    cluster_gpus: float
    cluster_cpus: float


def init_ray(address: str | None) -> None:
    import ray

    if address and address != "auto":
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"--address {address!r} is not HOST:PORT (e.g. 10.0.0.5:6379) or 'auto'")
        try:  # Ray itself retries for a long time before it gives up on a dead address
            socket.create_connection((host, int(port)), timeout=5).close()
        except OSError as exc:
            raise ConfigError(
                f"cannot reach a Ray cluster at {address} ({exc.strerror or exc}); start one with "
                f"'ray start --head' or fix --address"
            ) from None
    try:
        # Trial output (framework progress bars) goes to each trial's files, not to this terminal.
        ray.init(address=address, include_dashboard=False, ignore_reinit_error=True,
                 log_to_driver=False, logging_level="WARNING")
    except ConnectionError as exc:
        raise ConfigError(
            f"cannot connect to the Ray cluster at {address}: {last_line(str(exc))}; check --address "
            f"(a token-protected cluster also needs RAY_AUTH_MODE=token and its ~/.ray/auth_token here)"
        ) from None


def plan_resources(gpus_per_trial: float | None, cpus_per_trial: float | None, workers: int | None,
                   num_samples: int) -> Resources:
    """Trials per GPU (or CPU) slot; fail now rather than leave trials PENDING forever."""
    import ray

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    node_gpus = max((n["Resources"].get("GPU", 0) for n in nodes), default=0)
    node_cpus = max((n["Resources"].get("CPU", 0) for n in nodes), default=1)
    total = ray.cluster_resources()
    cluster_gpus, cluster_cpus = total.get("GPU", 0), total.get("CPU", 1)

    gpt = gpus_per_trial if gpus_per_trial is not None else (1.0 if cluster_gpus > 0 else 0.0)
    if gpt > node_gpus:
        raise ConfigError(
            f"--gpus-per-trial {gpt:g} is more than any node has ({node_gpus:g} GPUs); "
            f"lower it (fractions like 0.5 share a GPU)"
        )
    if gpt > 0:
        slots = sum(math.floor(n["Resources"].get("GPU", 0) / gpt + 1e-9) for n in nodes)
        cpt = cpus_per_trial or max(1.0, math.floor(cluster_cpus / max(1, slots)))
    else:
        cpt = cpus_per_trial or 1.0
    if cpt > node_cpus:
        raise ConfigError(f"--cpus-per-trial {cpt:g} is more than any node has ({node_cpus:g} CPUs); lower it")
    cpu_slots = sum(math.floor(n["Resources"].get("CPU", 0) / cpt + 1e-9) for n in nodes)
    slots = min(slots, cpu_slots) if gpt > 0 else cpu_slots
    n_workers = workers if workers is not None else int(min(8, max(0, cpt - 1)))
    return Resources(cpt, gpt, n_workers, max(1, min(num_samples, slots)), cluster_gpus, cluster_cpus)


def make_searcher(space: SearchSpace, metric: str, mode: str, seed: int, max_epochs: int):
    """Optuna TPE over the searched keys, told about ASHA's early stops (see PruningAwareOptunaSearch)."""
    if not space.searched:
        return None
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    class PruningAwareOptunaSearch(OptunaSearch):
        """Ray's OptunaSearch tells Optuna an ASHA-stopped trial COMPLETED with its truncated score,
        so TPE takes a 3-epoch score as final. Tell it PRUNED instead: TPE then ranks the trial by
        its intermediate values, as Optuna's own pruners do."""

        def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
            stopped_early = (
                result is not None and not error and trial_id in self._ot_trials
                and trial_id not in self._completed_trials
                and result.get("training_iteration", max_epochs) < max_epochs
                and not result.get(DIVERGED_KEY)
            )
            if stopped_early:
                self._ot_study.tell(self._ot_trials[trial_id], None, state=optuna.trial.TrialState.PRUNED)
                self._completed_trials.add(trial_id)
                return
            super().on_trial_complete(trial_id, result, error)

    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, max(2, len(space.searched))))
    return PruningAwareOptunaSearch(space=dict(space.searched), metric=metric, mode=mode, sampler=sampler)


def make_trainable(settings: RunSettings):
    from ray import tune

    resources = {"cpu": settings.cpus_per_trial, "gpu": settings.gpus_per_trial}
    return tune.with_resources(tune.with_parameters(run_trial, settings=settings), resources)


def build_tuner(settings: RunSettings, space: SearchSpace, *, name: str, storage: Path, num_samples: int,
                grace_period: int, reduction_factor: float, max_concurrent: int,
                time_budget: float | None, max_failures: int):
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    searcher = make_searcher(space, settings.metric, settings.mode, settings.seed, settings.max_epochs)
    scheduler = ASHAScheduler(  # metric/mode come from TuneConfig (Ray refuses them twice)
        time_attr="training_iteration", max_t=settings.max_epochs,
        grace_period=grace_period, reduction_factor=reduction_factor,
    )
    return tune.Tuner(
        make_trainable(settings),
        param_space=dict(space.fixed),
        tune_config=tune.TuneConfig(
            search_alg=searcher, scheduler=scheduler, metric=settings.metric, mode=settings.mode,
            num_samples=num_samples if searcher else 1,
            # Ray admits one pending trial for a custom searcher unless told otherwise: GPUs would idle.
            max_concurrent_trials=max_concurrent, time_budget_s=time_budget, reuse_actors=False,
            trial_name_creator=_trial_name, trial_dirname_creator=_trial_name,
        ),
        run_config=tune.RunConfig(
            name=name, storage_path=str(storage), verbose=1,
            log_to_file=True,  # each trial's framework output goes to its own stdout/stderr files
            # The latest checkpoint is always kept besides the best: resume and export need no more.
            checkpoint_config=tune.CheckpointConfig(
                num_to_keep=1, checkpoint_score_attribute=settings.metric,
                checkpoint_score_order=settings.mode,
            ),
            failure_config=tune.FailureConfig(max_failures=max_failures),
        ),
    )


def _trial_name(trial) -> str:
    return f"trial_{trial.trial_id}"


def restore_tuner(experiment_dir: Path, settings: RunSettings):
    from ray import tune

    return tune.Tuner.restore(str(experiment_dir), trainable=make_trainable(settings),
                              resume_unfinished=True, resume_errored=False, restart_errored=False)


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else "unknown error"
