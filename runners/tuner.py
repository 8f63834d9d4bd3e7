"""The Ray Tune `Tuner` of an experiment, new or resumed: the trainable, its resources, the
searcher (`runners/search.py`) on the experiment's study (`runners/study.py`), the scheduler and
the end reasons (`runners/endings.py`), storage, checkpoints and failure handling.

A resumed experiment gets a Tuner built like a new one from its record (segtune.json, with the
options a resume may change), told to resume through Ray's ResumeConfig. `Tuner.restore` would
rebuild everything from the pickled Tuner instead, so a grown --num-samples or a new --time-budget
could not reach it.
"""
from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

from ray.tune.search import ConcurrencyLimiter, SearchGenerator, Searcher

from core.choice import is_multi
from core.record import RunSettings, trial_dir_name
from runners.endings import EndLog, EndReasonCallback, RecordingASHA, TimeBudget
from runners.schedulers import FrameworkASHA, StopAtMaxEpochs
from runners.search import make_searcher
from runners.study import StudyPlace
from runners.trial import run_trial
from search_spaces.conditional import ConditionalSpace
from search_spaces.space import SearchSpace


class GrowableSearch(SearchGenerator):
    """Ray's search generator (with its concurrency limit), repaired for resuming:

    - Ray restores the number of samples of the first run; a resumed run may ask for more.
    - When the time budget runs out, Ray ends every trial without telling the searcher
      (TuneController._stop_experiment_if_needed): Optuna would keep them RUNNING, and the
      concurrency limiter would count them as live forever, so a grown search never started
      another trial. `set_finished` (what Ray calls right then) tells the searchers first."""

    def __init__(self, searcher: Searcher, num_samples: int, max_concurrent: int):
        self._limiter = ConcurrencyLimiter(searcher, max_concurrent=max(1, max_concurrent))
        super().__init__(self._limiter)
        self._num_samples = num_samples
        self._last_results: dict[str, dict] = {}

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self._last_results[trial_id] = result
        super().on_trial_result(trial_id, result)

    def set_state(self, state: dict) -> None:
        super().set_state(state)
        self._total_samples = max(self._total_samples, self._num_samples)
        if self._counter < self._total_samples:
            self._finished = False  # a finished (or time-budget-ended) search that was grown

    def set_finished(self) -> None:
        for trial_id in list(self._limiter.live_trials):
            self.on_trial_complete(trial_id, result=self._last_results.get(trial_id))
        super().set_finished()


def make_trainable(settings: RunSettings):
    from ray import tune

    resources = {"cpu": settings.cpus_per_trial, "gpu": settings.gpus_per_trial}
    return tune.with_resources(tune.with_parameters(run_trial, settings=settings), resources)


def study_place(settings: RunSettings, experiment_dir: Path, warm_start=None,
                first_points: Sequence[dict] = ()) -> StudyPlace:
    """The experiment's study; `warm_start` (runners/warm_start.py) seeds a new one, `first_points`
    (partial configurations, e.g. one per framework) are its first trials after the warm start's."""
    return StudyPlace(
        url=settings.study_url(experiment_dir), name=settings.study_name or experiment_dir.name,
        experiment_dir=experiment_dir, framework=settings.framework,
        warm_trials=warm_start.trials if warm_start else (),
        first_points=[*(warm_start.points if warm_start else []), *first_points],
    )


def make_scheduler(settings: RunSettings, end_log: EndLog):
    """ASHA, one per framework in a search over several (runners/schedulers.py); none with several
    objectives (runners/objectives.py): every trial trains to its last epoch."""
    if settings.objectives:
        return StopAtMaxEpochs(settings.max_epochs)
    # metric/mode come from TuneConfig (Ray refuses them twice)
    make = functools.partial(RecordingASHA, end_log, time_attr="training_iteration", max_t=settings.max_epochs,
                             grace_period=settings.grace_period, reduction_factor=settings.reduction_factor)
    return FrameworkASHA(make) if is_multi(settings) else make()


def build_tuner(settings: RunSettings, space: SearchSpace | ConditionalSpace, experiment_dir: Path, *,
                warm_start=None, first_points: Sequence[dict] = (), resume: bool = False, output: str = "default"):
    """The Tuner of `settings` (budget, schedule and study included); `resume` continues the
    experiment already in `experiment_dir`; `output` is the terminal mode (runners/progress.py)."""
    from ray import tune

    from runners.progress import ray_verbosity

    budget = TimeBudget(settings.time_budget)
    end_log = EndLog(experiment_dir, settings.max_epochs, budget)
    metric, mode = ([m for m, _ in settings.objectives], [d for _, d in settings.objectives]) if settings.objectives \
        else (settings.metric, settings.mode)
    searcher = make_searcher(space, metric, mode, settings.seed, end_log=end_log,
                             study=study_place(settings, experiment_dir, warm_start, first_points))
    scheduler = make_scheduler(settings, end_log)
    return tune.Tuner(
        make_trainable(settings),
        param_space=dict(space.fixed),
        tune_config=tune.TuneConfig(
            # Ray admits one pending trial for a custom searcher unless it is concurrency-limited.
            search_alg=GrowableSearch(searcher, settings.num_samples, settings.max_concurrent) if searcher else None,
            scheduler=scheduler, metric=settings.metric, mode=settings.mode,
            num_samples=settings.num_samples if searcher else 1,
            max_concurrent_trials=None if searcher else settings.max_concurrent, reuse_actors=False,
            trial_name_creator=_trial_name, trial_dirname_creator=_trial_name,
        ),
        run_config=tune.RunConfig(
            name=experiment_dir.name, storage_path=str(experiment_dir.parent), verbose=ray_verbosity(output),
            log_to_file=True,  # each trial's framework output goes to its own stdout/stderr files
            # Our own view instead of Ray's tables (runners/progress.py).
            stop=budget, callbacks=[EndReasonCallback(end_log), _progress_view(settings, output)],
            # The latest checkpoint is always kept besides the best: resume and export need no more.
            checkpoint_config=tune.CheckpointConfig(
                num_to_keep=1, checkpoint_score_attribute=settings.metric,
                checkpoint_score_order=settings.mode,
            ),
            failure_config=tune.FailureConfig(max_failures=settings.max_failures),
        ),
        # What Tuner.restore itself hands to Ray: finished and errored trials stay as they are,
        # unfinished ones continue from their last checkpoint.
        _tuner_kwargs={"resume_config": tune.ResumeConfig()} if resume else None,
    )


def _trial_name(trial) -> str:
    return trial_dir_name(trial.trial_id)


def _progress_view(settings: RunSettings, output: str):
    from runners.progress import SearchProgress

    return SearchProgress(metric=settings.metric, mode=settings.mode, max_epochs=settings.max_epochs,
                          searched=SearchSpace.from_dict(settings.space).searched,
                          experiment_dir=settings.experiment_dir, output=output,
                          time_budget=settings.time_budget)


def restore_tuner(experiment_dir: Path, settings: RunSettings, output: str = "default"):
    """An experiment recorded before segtune kept its budget in segtune.json: Ray's own restore."""
    from ray import tune

    from runners.progress import SearchProgress, ray_verbosity

    tuner = tune.Tuner.restore(str(experiment_dir), trainable=make_trainable(settings),
                               resume_unfinished=True, resume_errored=False, restart_errored=False)
    # Ray restores the first run's RunConfig, callbacks included: show this run's view in this run's mode.
    run_config = tuner._local_tuner.get_run_config()
    run_config.verbose = ray_verbosity(output)
    run_config.callbacks = [c for c in run_config.callbacks or [] if not isinstance(c, SearchProgress)]
    run_config.callbacks.append(_progress_view(settings, output))
    return tuner
