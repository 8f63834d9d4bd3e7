"""The search's size: epochs per trial, ASHA's grace period, how many trials an epoch budget
(`--budget-epochs N`) pays for (runners/search/endings.py: EpochBudget enforces it), and how TPE
starts: its random proposals."""

from __future__ import annotations

import math
from dataclasses import dataclass
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
        expected += (milestone - previous) / reduction_factor**k
        previous = milestone
    return expected


def trials_for_budget(
    budget: int, max_epochs: int, grace_period: int, reduction_factor: float, early_stopping: bool
) -> int:
    """How many trials a search with an epoch budget may start: without early stopping, what the
    budget pays for; with ASHA, half again as many as an average trial costs (asynchronous ASHA
    promotes more trials early on than its steady state), so that the budget, not the trial count,
    ends the search."""
    per_trial = expected_trial_epochs(max_epochs, grace_period, reduction_factor, early_stopping)
    trials = budget / per_trial
    return max(1, math.ceil(trials * 1.5 if early_stopping else trials))


# Fine-tuning converges in far fewer epochs than training from scratch (Ultralytics' and Detectron2's
# fine-tuning recipes train for tens of epochs, not hundreds) and its AP is above 0 from the first
# epoch, so an early ASHA rung already compares something: a third of the epochs, and on a GPU half
# again as many trials (24 trials of 30 epochs cost less than 16 of 100). On a CPU the trial count
# stays: the fine-tuned torchvision model (ResNet-50) costs ~15x the small from-scratch one per epoch.
FINETUNE_EPOCHS_GPU = 30
FINETUNE_SAMPLES_GPU = 24


def default_epochs(has_gpu: bool, default_epochs_cpu: int, pretrained: bool) -> int:
    """--max-epochs when not given: 100 with GPUs, the adapter's CPU default without; a third of that
    (30 with GPUs, at least 3) when fine-tuning."""
    if has_gpu:
        return FINETUNE_EPOCHS_GPU if pretrained else 100
    return max(3, default_epochs_cpu // 3) if pretrained else default_epochs_cpu


def search_budget(
    budget: BudgetRequest, has_gpu: bool, default_epochs_cpu: int, pretrained: bool = False
) -> tuple[int, int, int]:
    """(max_epochs, grace_period, num_samples) of a new search, from the request, the hardware and
    the starting point (`pretrained`: fine-tuning; runners/plan/starting_point.py): on CPU, the
    adapter's own default epochs and a grace period of a third of them (AP is 0 in every trial for the
    first epochs of a CPU budget from scratch: ASHA's early rungs would compare noise, see
    docs/BENCHMARKS.md), a fifth when fine-tuning (AP rises from the first epoch); with GPUs 100
    epochs (30 fine-tuning), grace a tenth; --budget-epochs sets the trial count."""
    max_epochs = budget.max_epochs or default_epochs(has_gpu, default_epochs_cpu, pretrained)
    grace = budget.grace_period or max(1, max_epochs // (10 if has_gpu else 5 if pretrained else 3))
    if grace > max_epochs:
        raise ConfigError(f"--grace-period ({grace}) is longer than --max-epochs ({max_epochs}); lower it")
    num_samples = budget.num_samples or ((FINETUNE_SAMPLES_GPU if pretrained else 16) if has_gpu else 8)
    if budget.budget_epochs and not budget.num_samples:
        num_samples = trials_for_budget(
            budget.budget_epochs, max_epochs, grace, budget.reduction_factor, early_stopping=budget.scheduler == "asha"
        )
    return max_epochs, grace, num_samples


@dataclass(frozen=True)
class SamplerPlan:
    """The sampler's settings, decided from the budget."""

    n_startup_trials: int  # finished trials (start points included) before TPE takes over from random
    num_samples: int
    start_points: int = 0  # trials proposed by segtune, not sampled (the framework's defaults, --start-from)
    # One joint density over all keys: a good learning rate depends on the optimizer and the batch.
    multivariate: bool = True
    constant_liar: bool = True  # running trials count as bad ones: concurrent trials spread out
    sampler: str = "tpe"  # "random": Optuna's RandomSampler, the baseline TPE is measured against
    # A conditional space (several frameworks): TPE models each framework's parameters with the
    # trials that have them (no one set of parameters is shared by every trial).
    group: bool = False

    def describe(self) -> str:
        start = f"{self.start_points} start point{'s' * (self.start_points != 1)} first, " if self.start_points else ""
        if self.sampler == "random":
            return f"random search (--sampler random): {start}then uniformly random proposals"
        return (
            f"TPE: {start}random proposals until {self.n_startup_trials} of {self.num_samples} trials have "
            f"finished, then TPE ({'multivariate' if self.multivariate else 'independent'}"
            f"{', grouped by framework' if self.group else ''}{', constant liar' if self.constant_liar else ''})"
        )


def plan_sampler(num_samples: int, start_points: int = 0, sampler: str = "tpe") -> SamplerPlan:
    """A quarter of the budget (at least 2, never all of it; start points count) explores before TPE
    models the results. Optuna's fixed default of 10 made every search of up to 10 trials random."""
    startup = min(max(2, math.ceil(num_samples / 4)), max(1, num_samples - 1))
    return SamplerPlan(n_startup_trials=startup, num_samples=num_samples, start_points=start_points, sampler=sampler)
