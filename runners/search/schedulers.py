"""The search's scheduler (`make_scheduler`): ASHA that records its cuts and never cuts a confirmation
trial (runners/search/endings.py, runners/search/confirming.py), ASHA per framework (a search over several
frameworks), and the end of every trial at its last epoch without ASHA (`--scheduler none`,
several objectives).

ASHA in a search over several frameworks: each framework's trials are judged against each other.

ASHA stops a trial at a rung when it is below the best 1/reduction-factor of the trials that
reached that rung. Across frameworks that compares different learning curves: from scratch on
small data a Mask R-CNN scores in its first epochs while a YOLO11-seg often has AP 0 for several
(Ultralytics starts its class bias at a very low prior), so one shared ladder would stop YOLO
trials for their slow start, not for their configuration. `FrameworkASHA` keeps one ASHA per
framework (its own rungs, the same max_t, grace period and reduction factor) and hands each trial
to its framework's; which framework wins is decided at the end, on trials that each had the chance
to train in full.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from segtune.core.choice import FRAMEWORK_KEY
from segtune.core.record import RunSettings
from segtune.runners.search.endings import EndLog, RecordingASHA


def make_scheduler(settings: RunSettings, end_log: EndLog) -> TrialScheduler:
    """ASHA (one per framework in a search over several); none with `--scheduler none` or several
    objectives (runners/plan/objectives.py): every trial trains to its last epoch."""
    schedule, max_epochs = settings.schedule, settings.budget.max_epochs
    if settings.objective.objectives or schedule.scheduler == "none":
        return StopAtMaxEpochs(max_epochs)
    # metric/mode come from TuneConfig (Ray refuses them twice)
    make = functools.partial(
        RecordingASHA,
        end_log,
        time_attr="training_iteration",
        max_t=max_epochs,
        grace_period=schedule.grace_period,
        reduction_factor=schedule.reduction_factor,
    )
    return FrameworkASHA(make) if settings.is_multi else make()


class FrameworkASHA(FIFOScheduler):
    """One scheduler from `make()` per framework (`segtune:framework` in the trial's config);
    Ray talks to this one, which forwards each call to the trial's framework's scheduler."""

    def __init__(self, make: Callable[[], TrialScheduler]):
        super().__init__()
        self._make = make
        # Its own metric and mode (Ray's base class keeps its copy private), handed to each framework's.
        self._search_metric: str | None = None
        self._search_mode: str | None = None
        self.by_framework: dict[str, TrialScheduler] = {}

    @property
    def metric(self) -> str | None:
        return self._search_metric

    def set_search_properties(self, metric: str | None, mode: str | None, **spec) -> bool:
        if (self._search_metric and metric) or (self._search_mode and mode):
            return False
        self._search_metric, self._search_mode = metric or self._search_metric, mode or self._search_mode
        for scheduler in self.by_framework.values():
            scheduler.set_search_properties(metric, mode, **spec)
        return True

    def scheduler_of(self, trial: Trial) -> TrialScheduler:
        framework = str((trial.config or {}).get(FRAMEWORK_KEY, ""))
        if framework not in self.by_framework:
            scheduler = self._make()
            scheduler.set_search_properties(self._search_metric, self._search_mode)
            self.by_framework[framework] = scheduler
        return self.by_framework[framework]

    def on_trial_add(self, tune_controller, trial: Trial) -> None:
        self.scheduler_of(trial).on_trial_add(tune_controller, trial)

    def on_trial_error(self, tune_controller, trial: Trial) -> None:
        self.scheduler_of(trial).on_trial_error(tune_controller, trial)

    def on_trial_result(self, tune_controller, trial: Trial, result: dict) -> str:
        return self.scheduler_of(trial).on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller, trial: Trial, result: dict) -> None:
        self.scheduler_of(trial).on_trial_complete(tune_controller, trial, result)

    def on_trial_remove(self, tune_controller, trial: Trial) -> None:
        self.scheduler_of(trial).on_trial_remove(tune_controller, trial)

    def debug_string(self) -> str:
        return "\n".join(f"{framework}: {s.debug_string()}" for framework, s in self.by_framework.items())


class StopAtMaxEpochs(FIFOScheduler):
    """Ray's FIFO scheduler (no early stopping: several objectives, runners/plan/objectives.py) that ends a
    trial after its last epoch as ASHA does at max_t: the adapters hand their loop's end to Ray
    (Ultralytics' own end-of-training steps expect weights that segtune has moved into checkpoints)."""

    def __init__(self, max_epochs: int):
        super().__init__()
        self.max_epochs = max_epochs

    def on_trial_result(self, tune_controller, trial: Trial, result: dict) -> str:
        if int(result.get("training_iteration", 0)) >= self.max_epochs:
            return TrialScheduler.STOP
        return TrialScheduler.CONTINUE
