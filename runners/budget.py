"""An epoch budget for a whole search (`--budget-epochs N`): the search ends once its trials have
trained N epochs in all, so that searches with different samplers and schedulers, or another
tuner, can be compared at equal compute.

Ray Tune calls the stopper with every result (one result = one epoch of one trial). The count is
the sum over trials of each one's latest `training_iteration`, so a trial retried from a checkpoint
is not counted twice. It is kept in a small JSON file in the experiment directory: a resumed search
(whose stopper Ray unpickles as it was when the search began) goes on from the count it had.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path

from ray.tune import Stopper

BUDGET_STATE_FILE = "segtune-budget.json"


class EpochBudget(Stopper):
    """Stops the trial that reports the epoch reaching `budget`, and then every other trial: those
    running are ended, pending ones never start. Epochs trained but not yet reported when the budget
    is reached (a running trial's partial epoch) are not counted."""

    def __init__(self, budget: int, state_file: Path | None = None) -> None:
        if budget <= 0:
            raise ValueError(f"an epoch budget must be positive, got {budget}")
        self.budget = int(budget)
        self.state_file = Path(state_file) if state_file is not None else None
        self._epochs: dict[str, int] | None = None  # trial id -> its latest training_iteration

    @property
    def spent(self) -> int:
        return sum(self._counts().values())

    def __call__(self, trial_id: str, result: dict) -> bool:
        counts = self._counts()
        epoch = int(result.get("training_iteration") or 0)
        if epoch > counts.get(trial_id, 0):
            counts[trial_id] = epoch
            self._save()
        return self.stop_all()

    def stop_all(self) -> bool:
        return self.spent >= self.budget

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

    def _save(self) -> None:
        if self.state_file is None:
            return
        tmp = self.state_file.with_name(self.state_file.name + ".tmp")
        tmp.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps({"budget": self.budget, "epochs": self._epochs}))
        os.replace(tmp, self.state_file)  # never a half-written file, even when killed


def expected_trial_epochs(max_epochs: int, grace_period: int, reduction_factor: float, early_stopping: bool) -> float:
    """Epochs an average trial trains: all of them without early stopping; under ASHA every trial
    reaches the first rung (`grace_period`) and 1/reduction_factor of those reaching a rung go on to
    the next one (rungs at grace * rf^k, then max_epochs)."""
    if not early_stopping:
        return float(max_epochs)
    milestones = []
    rung = float(grace_period)
    while rung < max_epochs:
        milestones.append(rung)
        rung *= reduction_factor
    milestones.append(float(max_epochs))
    expected, previous = 0.0, 0.0
    for k, milestone in enumerate(milestones):
        expected += (milestone - previous) / reduction_factor ** k
        previous = milestone
    return expected


def trials_for_budget(budget: int, max_epochs: int, grace_period: int, reduction_factor: float,
                      early_stopping: bool) -> int:
    """How many trials a search with an epoch budget may start: without early stopping, what the
    budget pays for; with ASHA, half again as many as an average trial costs (asynchronous ASHA
    promotes more trials early on than its steady state), so that the budget, not the trial count,
    ends the search."""
    per_trial = expected_trial_epochs(max_epochs, grace_period, reduction_factor, early_stopping)
    trials = budget / per_trial
    return max(1, math.ceil(trials * 1.5 if early_stopping else trials))
