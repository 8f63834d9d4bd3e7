"""An epoch budget for a whole search (`--budget-epochs N`): the search ends once its trials have
trained N epochs in all, so that searches with different samplers and schedulers, or another
tuner, can be compared at equal compute.

Ray Tune calls the stopper with every result (one result = one epoch of one trial). The count is
the sum over trials of each one's latest `training_iteration`, so a trial retried from a checkpoint
is not counted twice. It is kept in `<experiment>/segtune-budget.json`: a resumed search goes on
from the count it had. On resume Ray puts the stopper it pickled into its snapshot in place of the
one given to the resumed run (as for `runners/search/endings.py:TimeBudget`); a restored copy defers to
the budget built for the current run of this process, which the end reasons (`EndLog`) consult.
"""
from __future__ import annotations

import json
from pathlib import Path

from ray.tune import Stopper

from segtune.core.record import write_json_atomic

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
