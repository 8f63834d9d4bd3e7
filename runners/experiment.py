"""Ray Tune wiring: cluster, searcher, scheduler, Tuner — and the final summary."""
from __future__ import annotations

import collections
import socket
from pathlib import Path
from typing import Any

from runners.trial import DIVERGED_KEY, FAILURE_KEY, RunSettings, run_trial
from search_spaces.space import SearchSpace
from trainers.base import ConfigError


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
            f"cannot connect to the Ray cluster at {address}: {_last_line(str(exc))}; check --address "
            f"(a token-protected cluster also needs RAY_AUTH_MODE=token and its ~/.ray/auth_token here)"
        ) from None


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
            max_concurrent_trials=max_concurrent, time_budget_s=time_budget,
            # The next trial runs in the process of one that ended: a fresh process per trial imports
            # Ray Tune, torch and the framework again (and makes a CUDA context), seconds in which its
            # GPU idles (docs/BENCHMARKS.md, "GPU packing"). Adapters keep no state between trials.
            reuse_actors=True,
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


def summarize(results, settings: RunSettings, experiment_dir: Path) -> tuple[int, str]:
    """The closing text and the exit status (1 when every trial failed)."""
    lines: list[str] = []
    failures: list[str] = []
    for result in results:
        metrics = result.metrics or {}
        if result.error is not None:
            failures.append(_last_line(str(result.error)))
        elif metrics.get(DIVERGED_KEY):
            failures.append(str(metrics.get(FAILURE_KEY, "diverged")))
    total = len(results)
    if total == 0 or len(failures) == total:
        common = collections.Counter(_reason_kind(f) for f in failures).most_common(1)
        reason = common[0][0] if common else "no trial ran"
        return 1, f"every trial failed ({total} of {total}); most common reason: {reason}"
    best = results.get_best_result(metric=settings.metric, mode=settings.mode, scope="all")
    best_epoch = _best_row(best, settings.metric, settings.mode)
    checkpoint = best.get_best_checkpoint(settings.metric, settings.mode) if best.best_checkpoints else None
    lines.append(f"{total} trials, {len(failures)} failed or diverged")
    lines.append(f"best trial: {Path(best.path).name}")
    lines.append(f"  {settings.metric} = {best_epoch.get(settings.metric, float('nan')):.3f} "
                 f"at epoch {best_epoch.get('training_iteration', '?')}")
    metric_line = ", ".join(f"{k}={best_epoch[k]:.2f}" for k in ("segm/AP", "segm/AP50", "bbox/AP", "bbox/AP50")
                            if k in best_epoch)
    lines.append(f"  {metric_line}")
    lines.append(f"  config: {best.config}")
    lines.append(f"  checkpoint: {checkpoint.path if checkpoint else '(none)'}")
    lines.append(f"watch curves:  tensorboard --logdir {experiment_dir}")
    lines.append(f"rank trials:   python analysis/rank.py {experiment_dir}")
    lines.append(f"export best:   python analysis/export_best.py {experiment_dir} --out {experiment_dir}/best")
    return 0, "\n".join(lines)


def _best_row(result, metric: str, mode: str) -> dict[str, Any]:
    frame = result.metrics_dataframe
    if frame is None or metric not in frame or frame[metric].isna().all():
        return dict(result.metrics or {})
    index = frame[metric].idxmax() if mode == "max" else frame[metric].idxmin()
    return frame.loc[index].to_dict()


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else "unknown error"


def _reason_kind(reason: str) -> str:
    return reason.split(" at ")[0][:200]
