"""The Ray Tune `Tuner` of an experiment, new or resumed: the trainable, its resources, the
searcher (`runners/search/searcher.py`) on the experiment's study (`runners/search/study.py`), the
scheduler and the end reasons (`runners/search/endings.py`), storage, checkpoints and failure handling.

A resumed experiment gets a Tuner built like a new one from its record (segtune.json, with the
options a resume may change), told to resume through Ray's ResumeConfig. `Tuner.restore` would
rebuild everything from the pickled Tuner instead, so a grown --num-samples or a new --time-budget
could not reach it. The two things Ray has no public way for (a new Tuner that resumes; the restored
Tuner's RunConfig) and the generator's counts go through runners/search/internals.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ray.tune.search import ConcurrencyLimiter, Searcher, SearchGenerator

from segtune.core.record import RunSettings, trial_dir_name
from segtune.core.score import SCORE_KEY, WINDOW_KEY
from segtune.runners.plan.budget import plan_sampler
from segtune.runners.plan.confirm import confirm_plan
from segtune.runners.search.confirming import ConfirmingSearcher
from segtune.runners.search.endings import EndLog, EndReasonCallback, EpochBudget, TimeBudget
from segtune.runners.search.internals import (
    grown_state,
    resuming_tuner,
    run_config_of,
    searcher_finished,
    trials_created,
)
from segtune.runners.search.schedulers import make_scheduler
from segtune.runners.search.searcher import make_searcher
from segtune.runners.search.study import StudyPlace
from segtune.runners.trial.loop import run_trial
from segtune.search_spaces.conditional import ConditionalSpace
from segtune.search_spaces.space import SearchSpace
from segtune.trainers.registry import get_adapter


class GrowableSearch(SearchGenerator):
    """Ray's search generator (with its concurrency limit), repaired for resuming:

    - Ray restores the number of samples of the first run; a resumed run may ask for more.
    - When the time budget runs out, Ray ends every trial without telling the searcher
      (runners/search/internals.py: EARLY_END_METHOD): Optuna would keep them RUNNING, and the
      concurrency limiter would count them as live forever, so a grown search never started
      another trial. `set_finished` (what Ray calls right then) tells the searchers first."""

    def __init__(self, searcher: Searcher, num_samples: int, max_concurrent: int):
        self._limiter = ConcurrencyLimiter(searcher, max_concurrent=max(1, max_concurrent))
        super().__init__(self._limiter)
        self._num_samples = num_samples
        self._last_results: dict[str, dict] = {}
        # Confirmation trials are planned when the search trials end, and a grown search confirms
        # its new best too: their number comes from the confirming searcher, not from a fixed total.
        self._confirming = searcher if isinstance(searcher, ConfirmingSearcher) else None

    @property
    def total_samples(self) -> int:
        total = super().total_samples
        if self._confirming is None:
            return total
        return max(total, self._confirming.planned_trials())

    def is_finished(self) -> bool:
        return trials_created(self) >= self.total_samples or searcher_finished(self)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self._last_results[trial_id] = result
        super().on_trial_result(trial_id, result)

    def set_state(self, state: dict) -> None:
        # A finished (or time-budget-ended) search that was grown goes on.
        super().set_state(grown_state(state, self._num_samples))

    def set_finished(self) -> None:
        for trial_id in list(self._limiter.live_trials):
            self.on_trial_complete(trial_id, result=self._last_results.get(trial_id))
        super().set_finished()


def make_trainable(settings: RunSettings):
    from ray import tune

    resources = {"cpu": settings.resources.cpus_per_trial, "gpu": settings.resources.gpus_per_trial}
    return tune.with_resources(tune.with_parameters(run_trial, settings=settings), resources)


def reuse_processes(settings: RunSettings) -> bool:
    """Ray's `reuse_actors`: a finished trial's process runs the next trial (no process start,
    imports or caches paid again) where every framework of the search leaves no per-process state."""
    if settings.is_multi:
        return all(get_adapter(entry.name, entry.backend or "auto").reuse_process for entry in settings.frameworks)
    return get_adapter(settings.sole_framework.name, settings.sole_framework.backend).reuse_process


def study_place(
    settings: RunSettings, experiment_dir: Path, warm_start=None, first_points: Sequence[dict[str, Any]] = ()
) -> StudyPlace:
    """The experiment's study; a new one tries the best points of `warm_start` (runners/search/warm_start.py),
    whose trials it also learns from, and then `first_points` (the framework's defaults, --start-from;
    one per framework in a search over several)."""
    return StudyPlace(
        url=settings.study_url(experiment_dir),
        name=settings.study_name_at(experiment_dir),
        experiment_dir=experiment_dir,
        framework=",".join(settings.framework_names),
        warm_trials=warm_start.trials if warm_start else (),
        first_points=ordered_first_points(warm_start, first_points),
    )


def ordered_first_points(warm_start, first_points: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The trials a new study tries first: the warm start's best points, then `first_points`, each once."""
    points: list[dict[str, Any]] = []
    for point in [*(warm_start.points if warm_start else []), *first_points]:
        if point not in points:
            points.append(point)
    return points


def build_tuner(
    settings: RunSettings,
    space: SearchSpace | ConditionalSpace,
    experiment_dir: Path,
    *,
    warm_start=None,
    first_points: Sequence[dict[str, Any]] = (),
    resume: bool = False,
    output: str = "default",
):
    """The Tuner of `settings` (budget, schedule, study and confirmation included); `resume`
    continues the experiment already in `experiment_dir`; `output` is the terminal mode
    (runners/view/progress.py). Ray Tune's metric is the trial's score (`core.score`), the smoothed
    `settings.objective.metric`: ASHA's rungs, Optuna and the ranking all judge a trial by it (with several
    objectives, the score stands for the first)."""
    from ray import tune
    from ray.tune.stopper import CombinedStopper

    from segtune.runners.view.progress import ray_verbosity

    if resume:
        _report_set_aside(experiment_dir)
    spend, objective, resources = settings.budget, settings.objective, settings.resources
    budget = TimeBudget(spend.time_budget)
    epoch_budget = EpochBudget(spend.budget_epochs, experiment_dir) if spend.budget_epochs else None
    end_log = EndLog(experiment_dir, spend.max_epochs, budget, epoch_budget)
    place = study_place(settings, experiment_dir, warm_start, first_points)
    metric, mode = SCORE_KEY, objective.mode
    if objective.objectives:
        metric = [SCORE_KEY] + [m for m, _ in objective.objectives[1:]]
        mode = [d for _, d in objective.objectives]
    plan = plan_sampler(spend.num_samples, len(place.first_points), settings.schedule.sampler)
    searcher = make_searcher(space, metric, mode, settings.seed, study=place, end_log=end_log, plan=plan)
    total = spend.num_samples
    confirm = confirm_plan(settings)
    if searcher is not None and confirm.trials:
        searcher = ConfirmingSearcher(searcher, spend.num_samples, confirm)
        total += confirm.trials
    scheduler = make_scheduler(settings, end_log)
    return resuming_tuner(
        make_trainable(settings),
        param_space=dict(space.fixed),
        tune_config=tune.TuneConfig(
            # Ray admits one pending trial for a custom searcher unless it is concurrency-limited.
            search_alg=GrowableSearch(searcher, total, resources.max_concurrent) if searcher else None,
            scheduler=scheduler,
            metric=SCORE_KEY,
            mode=objective.mode,
            num_samples=total if searcher else 1,
            max_concurrent_trials=None if searcher else resources.max_concurrent,
            reuse_actors=reuse_processes(settings),
            trial_name_creator=_trial_name,
            trial_dirname_creator=_trial_name,
        ),
        run_config=tune.RunConfig(
            name=experiment_dir.name,
            storage_path=str(experiment_dir.parent),
            verbose=ray_verbosity(output),
            # Each trial's framework output goes to its own stdout/stderr files, which Ray writes in the
            # trial's working directory (under /tmp/ray) and copies into <experiment>/trial_<id>/.
            log_to_file=True,
            sync_config=tune.SyncConfig(sync_artifacts=True),
            # Our own view instead of Ray's tables (runners/view/progress.py).
            stop=CombinedStopper(budget, epoch_budget) if epoch_budget else budget,
            callbacks=[EndReasonCallback(end_log), _progress_view(settings, output)],
            # The latest checkpoint is always kept besides the best: resume and export need no more.
            # The best is the epoch ending the best window (the score itself never decreases, and of
            # equal scores Ray keeps the later checkpoint).
            checkpoint_config=tune.CheckpointConfig(
                num_to_keep=1,
                checkpoint_score_attribute=WINDOW_KEY,
                checkpoint_score_order=objective.mode,
            ),
            failure_config=tune.FailureConfig(max_failures=resources.max_failures),
        ),
        # What Tuner.restore itself hands to Ray: finished and errored trials stay as they are,
        # unfinished ones continue from their last checkpoint.
        resume=resume,
    )


def _trial_name(trial) -> str:
    return trial_dir_name(trial.trial_id)


def _progress_view(settings: RunSettings, output: str):
    from segtune.runners.view.progress import SearchProgress

    return SearchProgress(
        metric=settings.objective.metric,
        mode=settings.objective.mode,
        max_epochs=settings.budget.max_epochs,
        searched=SearchSpace.from_dict(settings.space).searched,
        experiment_dir=settings.experiment_dir,
        output=output,
        time_budget=settings.budget.time_budget,
    )


def restore_tuner(experiment_dir: Path, settings: RunSettings, output: str = "default"):
    """An experiment recorded before segtune kept its budget in segtune.json (`settings.budget.recorded`
    is False, core/migrate.py): Ray's own restore."""
    from ray import tune

    from segtune.runners.view.progress import SearchProgress, ray_verbosity

    _report_set_aside(experiment_dir)
    tuner = tune.Tuner.restore(
        str(experiment_dir),
        trainable=make_trainable(settings),
        resume_unfinished=True,
        resume_errored=False,
        restart_errored=False,
    )
    # Ray restores the first run's RunConfig, callbacks included: show this run's view in this run's mode.
    run_config = run_config_of(tuner)
    run_config.verbose = ray_verbosity(output)
    run_config.callbacks = [c for c in run_config.callbacks or [] if not isinstance(c, SearchProgress)]
    run_config.callbacks.append(_progress_view(settings, output))
    return tuner


UNRECORDED_DIR = ".unrecorded"


def set_aside_unrecorded_trials(experiment_dir: Path) -> list[Path]:
    """Move trial folders that Ray's newest snapshot does not know into `<experiment>/.unrecorded/`.

    A trial starts (in a reused process: at once) before the next snapshot names it; a driver killed
    in between leaves its folder behind. Ray cannot resume such a trial (the searcher proposes a new
    one in its place), and analysis would show it as running forever. Nothing is deleted."""
    from segtune.analysis.trials import snapshot_trials

    recorded = snapshot_trials(Path(experiment_dir))
    if recorded is None:  # no snapshot, or one Ray is rewriting: nothing can be told apart
        return []
    known = {Path(trial["path"]).name for trial in recorded}
    moved = []
    for trial_dir in sorted(Path(experiment_dir).glob("trial_*")):
        if trial_dir.is_dir() and trial_dir.name not in known:
            target = Path(experiment_dir) / UNRECORDED_DIR / trial_dir.name
            target.parent.mkdir(exist_ok=True)
            trial_dir.rename(target)
            moved.append(target)
    return moved


def _report_set_aside(experiment_dir: Path) -> None:
    moved = set_aside_unrecorded_trials(experiment_dir)
    if moved:
        print(
            f"segtune: {len(moved)} trial(s) started but never recorded by the stopped driver moved to "
            f"{Path(experiment_dir) / UNRECORDED_DIR} (the search proposes new ones in their place)"
        )
