"""How the search proposes and judges trials: Optuna's TPE through Ray's OptunaSearch, on the
experiment's persistent study (runners/study.py: StudySearch)."""
from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

from search_spaces.conditional import ConditionalSpace
from search_spaces.space import SearchSpace

if TYPE_CHECKING:
    from runners.endings import EndLog
    from runners.study import StudyPlace, StudySearch


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


def make_sampler(plan: SamplerPlan, seed: int):
    import optuna

    if plan.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    with warnings.catch_warnings():  # `group` and `constant_liar` are "experimental" in Optuna
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(
            seed=seed, n_startup_trials=plan.n_startup_trials, multivariate=plan.multivariate,
            constant_liar=plan.constant_liar, group=plan.group,
        )


def make_searcher(space: SearchSpace | ConditionalSpace, metric: str | list[str], mode: str | list[str], seed: int,
                  *, study: StudyPlace, end_log: EndLog, plan: SamplerPlan | None = None) -> StudySearch | None:
    """Optuna's sampler (`plan`: TPE, or random as a baseline) over the searched keys, in `study`, told
    why each trial ended (`end_log`): PRUNED for ASHA's and the budgets' cuts, so TPE ranks them by their
    intermediate values. The study's `first_points` (possibly partial: Optuna samples the missing keys)
    are tried first. A ConditionalSpace (several frameworks) is Optuna define-by-run; lists of metrics
    and modes are several objectives (Optuna's TPE is multi-objective)."""
    if not space.searched:
        return None
    from runners.study import StudySearch

    conditional = isinstance(space, ConditionalSpace)
    plan = dataclasses.replace(plan or plan_sampler(8), group=conditional)
    return StudySearch(space=space if conditional else dict(space.searched), metric=metric, mode=mode,
                       sampler=make_sampler(plan, seed), place=study, end_log=end_log)
