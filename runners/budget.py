"""An epoch budget for a whole search (`--budget-epochs N`): the search ends once its trials have
trained N epochs in all, so that searches with different samplers and schedulers, or another
tuner, can be compared at equal compute.

Ray Tune calls the stopper with every result (one result = one epoch of one trial). The count is
the sum over trials of each one's latest `training_iteration`, so a trial retried from a checkpoint
is not counted twice. It is kept in `<experiment>/segtune-budget.json`: a resumed search goes on
from the count it had. On resume Ray puts the stopper it pickled into its snapshot in place of the
one given to the resumed run (as for `runners/endings.py:TimeBudget`); a restored copy defers to
the budget built for the current run of this process, which the end reasons (`EndLog`) consult.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from ray.tune import Stopper

from core.errors import ConfigError
from core.record import write_json_atomic

BUDGET_STATE_FILE = "segtune-budget.json"
# The one epoch budget of this driver process (see EpochBudget.__setstate__).
_ACTIVE_BUDGET: list["EpochBudget"] = []


class EpochBudget(Stopper):
    """Ends the search once `budget` epochs were reported: running trials are ended, pending ones
    never start. Epochs trained but not yet reported then (a running trial's partial epoch) are not
    counted. No single trial is stopped by its own result (`__call__` is always False): the result
    that reaches the budget still goes to the scheduler and the searcher, so the end reasons and the
    study see every reported epoch (runners/tuner.py:GrowableSearch.set_finished)."""

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

    def _current(self) -> "EpochBudget":
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


def search_budget(args, has_gpu: bool, default_epochs_cpu: int) -> tuple[int, int, int]:
    """(max_epochs, grace_period, num_samples) of a new search, from the command line and the hardware:
    on CPU, the adapter's own default epochs and a grace period of a third of them (AP is 0 in every
    trial for the first epochs of a CPU budget: ASHA's early rungs would compare noise, see
    docs/BENCHMARKS.md); with GPUs 100 epochs, grace a tenth; --budget-epochs sets the trial count."""
    max_epochs = args.max_epochs or (100 if has_gpu else default_epochs_cpu)
    grace = args.grace_period or max(1, max_epochs // (10 if has_gpu else 3))
    if grace > max_epochs:
        raise ConfigError(f"--grace-period ({grace}) is longer than --max-epochs ({max_epochs}); lower it")
    num_samples = args.num_samples or (16 if has_gpu else 8)
    if args.budget_epochs and not args.num_samples:
        num_samples = trials_for_budget(args.budget_epochs, max_epochs, grace, args.reduction_factor,
                                        early_stopping=args.scheduler == "asha")
    return max_epochs, grace, num_samples
