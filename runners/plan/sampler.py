"""How the search proposes trials, planned from the budget: TPE's random start and its settings (no Optuna here;
runners/search/searcher.py builds the sampler)."""
from __future__ import annotations

import math
from dataclasses import dataclass


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
        return (f"TPE: {start}random proposals until {self.n_startup_trials} of {self.num_samples} trials have "
                f"finished, then TPE ({'multivariate' if self.multivariate else 'independent'}"
                f"{', grouped by framework' if self.group else ''}{', constant liar' if self.constant_liar else ''})")


def plan_sampler(num_samples: int, start_points: int = 0, sampler: str = "tpe") -> SamplerPlan:
    """A quarter of the budget (at least 2, never all of it; start points count) explores before TPE
    models the results. Optuna's fixed default of 10 made every search of up to 10 trials random."""
    startup = min(max(2, math.ceil(num_samples / 4)), max(1, num_samples - 1))
    return SamplerPlan(n_startup_trials=startup, num_samples=num_samples, start_points=start_points,
                       sampler=sampler)
