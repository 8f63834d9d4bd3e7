"""The search's size: epochs per trial, ASHA's grace period, and how many trials an epoch budget
(`--budget-epochs N`) pays for (runners/search/stoppers.py:EpochBudget enforces it)."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

from segtune.core.errors import ConfigError

if TYPE_CHECKING:
    from segtune.runners.request import BudgetRequest


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


def search_budget(budget: BudgetRequest, has_gpu: bool, default_epochs_cpu: int) -> tuple[int, int, int]:
    """(max_epochs, grace_period, num_samples) of a new search, from the request and the hardware:
    on CPU, the adapter's own default epochs and a grace period of a third of them (AP is 0 in every
    trial for the first epochs of a CPU budget: ASHA's early rungs would compare noise, see
    docs/BENCHMARKS.md); with GPUs 100 epochs, grace a tenth; --budget-epochs sets the trial count."""
    max_epochs = budget.max_epochs or (100 if has_gpu else default_epochs_cpu)
    grace = budget.grace_period or max(1, max_epochs // (10 if has_gpu else 3))
    if grace > max_epochs:
        raise ConfigError(f"--grace-period ({grace}) is longer than --max-epochs ({max_epochs}); lower it")
    num_samples = budget.num_samples or (16 if has_gpu else 8)
    if budget.budget_epochs and not budget.num_samples:
        num_samples = trials_for_budget(budget.budget_epochs, max_epochs, grace, budget.reduction_factor,
                                        early_stopping=budget.scheduler == "asha")
    return max_epochs, grace, num_samples
