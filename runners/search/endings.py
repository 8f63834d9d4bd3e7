"""Why each trial ended: finished, stopped by ASHA, stopped by the time budget, stopped by the
framework's own early stop, diverged or failed.

Ray ends trials for several reasons and says why to nobody: a short finished trial looks the same
whether ASHA cut it, `--time-budget` ran out or the framework stopped on its own. The driver-side
pieces here record it: the scheduler notes its STOP decisions (`RecordingASHA`), the stopper knows
when the budget ran out (`TimeBudget`), and `EndLog.decide` turns those facts into one reason per
trial, writes it to `<experiment>/trial_<id>/end_reason.json` and hands it to the Optuna study
(runners/search/study.py), which tells TPE PRUNED only for truncated trials.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ray.tune import Callback, Stopper
from ray.tune.schedulers import TrialScheduler
from ray.tune.stopper import TimeoutStopper

from segtune.core.record import (
    DIVERGED_KEY,
    END_ASHA,
    END_DIVERGED,
    END_EPOCH_BUDGET,
    END_FAILED,
    END_FINISHED,
    END_FRAMEWORK,
    END_REASON_FILE,
    END_TIME_BUDGET,
    FAILURE_KEY,
    trial_dir_name,
    write_json_atomic,
)
from segtune.runners.search.confirming import ConfirmationAwareASHA

# The one budget of this driver process (see TimeBudget.__setstate__).
_ACTIVE_BUDGET: list[TimeBudget] = []


class TimeBudget(TimeoutStopper):
    """Ray's wall-clock stopper (`--time-budget`; None: never) that can say whether it ran out.

    Ray pickles the stopper into the experiment snapshot and, on resume, puts that old stopper in
    place of the one given to the resumed run (TuneController.__setstate__), so a new or removed
    `--time-budget` would be ignored and a spent budget would stop the resumed run at once. A
    restored copy therefore defers to the budget built for the current run of this process."""

    def __init__(self, seconds: float | None):
        super().__init__(seconds if seconds else float("inf"))
        self.seconds = seconds
        self._ran_out = False  # Ray's stopper said so once: its budget only shrinks
        self._restored = False
        _ACTIVE_BUDGET[:] = [self]

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self._restored = True

    def _current(self) -> TimeBudget | None:
        if not self._restored:
            return self
        return _ACTIVE_BUDGET[0] if _ACTIVE_BUDGET and _ACTIVE_BUDGET[0] is not self else None

    def stop_all(self) -> bool:
        current = self._current()
        if current is None:
            return False
        if current is not self:
            return current.stop_all()
        # TimeoutStopper says True once its budget is spent, and on every later call.
        self._ran_out = super().stop_all() or self._ran_out
        return self._ran_out

    @property
    def expired(self) -> bool:
        current = self._current()
        return current is not None and current._ran_out


class EndLog:
    """Driver-side record of why trials ended; shared by the scheduler, the stopper, the searcher
    and the callback of one run. The first decision for a trial is final and is written at once."""

    def __init__(self, experiment_dir: Path, max_epochs: int, budget: TimeBudget, epoch_budget=None):
        self.experiment_dir = Path(experiment_dir)
        self.max_epochs = max_epochs
        self.budget = budget
        self.epoch_budget = epoch_budget  # runners/search/endings.py:EpochBudget, or None
        self.asha_stopped: set[str] = set()
        self.decided: dict[str, str] = {}

    def mark_asha(self, trial_id: str) -> None:
        self.asha_stopped.add(trial_id)

    def decide(self, trial_id: str, result: dict[str, Any] | None, error: bool = False) -> str:
        if trial_id in self.decided:
            return self.decided[trial_id]
        trial_dir = self.experiment_dir / trial_dir_name(trial_id)
        earlier = _recorded_reason(trial_dir / END_REASON_FILE)
        if earlier:  # decided by an earlier run of this experiment (before a resume): it stands
            self.decided[trial_id] = earlier
            return earlier
        result = result or {}
        epochs = int(result.get("training_iteration") or 0)
        if error:
            reason = END_FAILED
        elif result.get(DIVERGED_KEY):
            reason = END_DIVERGED
        elif trial_id in self.asha_stopped:
            reason = END_ASHA
        elif epochs >= self.max_epochs:
            reason = END_FINISHED
        elif self.budget.expired:
            reason = END_TIME_BUDGET
        elif self.epoch_budget is not None and self.epoch_budget.ran_out:
            reason = END_EPOCH_BUDGET
        elif epochs == 0:
            reason = END_FAILED  # ended before its first epoch without an error Ray saw
        else:
            # Nothing in Ray stopped it: the trainable returned early, i.e. the framework stopped.
            reason = END_FRAMEWORK
        self.decided[trial_id] = reason
        record = {"reason": reason, "epochs": epochs, "max_epochs": self.max_epochs}
        if reason == END_DIVERGED:
            record["detail"] = str(result.get(FAILURE_KEY, ""))[:500]
        if reason == END_TIME_BUDGET:
            record["time_budget_s"] = self.budget.seconds
        if reason == END_EPOCH_BUDGET:
            record["budget_epochs"] = self.epoch_budget.budget
        trial_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(trial_dir / END_REASON_FILE, record)
        return reason


def _recorded_reason(path: Path) -> str:
    try:
        return str(json.loads(path.read_text()).get("reason") or "")
    except (OSError, ValueError, AttributeError):
        return ""


class RecordingASHA(ConfirmationAwareASHA):
    """ASHA (that never cuts a confirmation trial) noting which trials it stopped before their last
    epoch (at max_t it says STOP too: that is a finished trial, not a cut one)."""

    def __init__(self, end_log: EndLog, **kwargs: Any):
        super().__init__(**kwargs)
        self._end_log = end_log

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        decision = super().on_trial_result(tune_controller, trial, result)
        if decision == TrialScheduler.STOP and int(result.get("training_iteration", 0)) < self._end_log.max_epochs:
            self._end_log.mark_asha(trial.trial_id)
        return decision


class EndReasonCallback(Callback):
    """Decides (and so writes) the end reason of every trial, including those no searcher hears
    about: trials of a fixed --config run, and trials Ray ends when the time budget runs out."""

    def __init__(self, end_log: EndLog):
        self._end_log = end_log

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        self._end_log.decide(trial.trial_id, trial.last_result)

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        self._end_log.decide(trial.trial_id, trial.last_result, error=True)

    def on_experiment_end(self, trials: list, **info) -> None:
        if not self._end_log.budget.expired:
            return  # an interrupted run: its unfinished trials continue on --resume
        for trial in trials:
            if trial.status == "TERMINATED":
                self._end_log.decide(trial.trial_id, trial.last_result)


BUDGET_STATE_FILE = "segtune-budget.json"
# The one epoch budget of this driver process (see EpochBudget.__setstate__).
_ACTIVE_BUDGET: list[EpochBudget] = []


class EpochBudget(Stopper):
    """Ends the search once `budget` epochs were reported: running trials are ended, pending ones
    never start. Epochs trained but not yet reported then (a running trial's partial epoch) are not
    counted. No single trial is stopped by its own result (`__call__` is always False): the result
    that reaches the budget still goes to the scheduler and the searcher, so the end reasons and the
    study see every reported epoch (runners/search/tuner.py:GrowableSearch.set_finished)."""

    def __init__(self, budget: int, experiment_dir: Path | None = None) -> None:
        if budget <= 0:
            raise ValueError(f"an epoch budget must be positive, got {budget}")
        self.budget = int(budget)
        self.state_file = Path(experiment_dir) / BUDGET_STATE_FILE if experiment_dir is not None else None
        self._epochs: dict[str, int] | None = None  # trial id -> its latest training_iteration
        self._restored = False
        _ACTIVE_BUDGET[:] = [self]

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._restored = True

    def _current(self) -> EpochBudget:
        if self._restored and _ACTIVE_BUDGET and _ACTIVE_BUDGET[0] is not self:
            return _ACTIVE_BUDGET[0]
        return self

    @property
    def spent(self) -> int:
        return sum(self._current()._counts().values())

    @property
    def ran_out(self) -> bool:
        return self.spent >= self._current().budget

    def __call__(self, trial_id: str, result: dict) -> bool:
        current = self._current()
        counts = current._counts()
        epoch = int(result.get("training_iteration") or 0)
        if epoch > counts.get(trial_id, 0):
            counts[trial_id] = epoch
            if current.state_file is not None:
                write_json_atomic(current.state_file, {"budget": current.budget, "epochs": counts})
        return False

    def stop_all(self) -> bool:
        return self.ran_out

    def _counts(self) -> dict[str, int]:
        if self._epochs is None:
            self._epochs = {}
            if self.state_file is not None and self.state_file.is_file():
                try:
                    saved = json.loads(self.state_file.read_text())
                    self._epochs = {str(k): int(v) for k, v in saved.get("epochs", {}).items()}
                except (OSError, ValueError, TypeError, AttributeError):
                    self._epochs = {}  # unreadable: count again from the results still to come
        return self._epochs
