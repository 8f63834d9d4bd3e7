"""The Ray Tune `Tuner` of an experiment, new or restored: the trainable, its resources, the
searcher and scheduler (`runners/search.py`), storage, checkpoints and failure handling."""
from __future__ import annotations

from pathlib import Path

from core.record import RunSettings
from runners.search import make_searcher
from runners.trial import run_trial
from search_spaces.space import SearchSpace


def make_trainable(settings: RunSettings):
    from ray import tune

    resources = {"cpu": settings.cpus_per_trial, "gpu": settings.gpus_per_trial}
    return tune.with_resources(tune.with_parameters(run_trial, settings=settings), resources)


def build_tuner(settings: RunSettings, space: SearchSpace, *, name: str, storage: Path, num_samples: int,
                grace_period: int, reduction_factor: float, max_concurrent: int,
                time_budget: float | None, max_failures: int, sampler: str = "tpe", early_stopping: bool = True,
                budget_epochs: int | None = None):
    """`sampler` "tpe" or "random"; without `early_stopping` every trial trains all its epochs (FIFO);
    `budget_epochs`: the search ends once its trials have trained that many epochs (runners/budget.py)."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    searcher = make_searcher(space, settings.metric, settings.mode, settings.seed, settings.max_epochs,
                             sampler_name=sampler)
    scheduler = ASHAScheduler(  # metric/mode come from TuneConfig (Ray refuses them twice)
        time_attr="training_iteration", max_t=settings.max_epochs,
        grace_period=grace_period, reduction_factor=reduction_factor,
    )
    if not early_stopping:
        scheduler = FIFOScheduler()
    stop = None
    if budget_epochs:
        from runners.budget import BUDGET_STATE_FILE, EpochBudget

        stop = EpochBudget(budget_epochs, Path(settings.experiment_dir) / BUDGET_STATE_FILE)
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
            name=name, storage_path=str(storage), verbose=1, stop=stop,
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
