"""How the search proposes and judges trials: Optuna's TPE through Ray's OptunaSearch."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from core.record import DIVERGED_KEY
from search_spaces.space import SearchSpace


@dataclass(frozen=True)
class SamplerPlan:
    """TPE's settings, decided from the budget."""

    n_startup_trials: int  # finished trials (start points included) before TPE takes over from random
    num_samples: int
    start_points: int = 0  # trials proposed by segtune, not sampled (the framework's defaults, --start-from)
    # One joint density over all keys: a good learning rate depends on the optimizer and the batch.
    multivariate: bool = True
    constant_liar: bool = True  # running trials count as bad ones: concurrent trials spread out

    def describe(self) -> str:
        start = f"{self.start_points} start point{'s' * (self.start_points != 1)} first, " if self.start_points else ""
        return (f"TPE: {start}random proposals until {self.n_startup_trials} of {self.num_samples} trials have "
                f"finished, then TPE ({'multivariate' if self.multivariate else 'independent'}"
                f"{', constant liar' if self.constant_liar else ''})")


def plan_sampler(num_samples: int, start_points: int = 0) -> SamplerPlan:
    """A quarter of the budget (at least 2, never all of it; start points count) explores before TPE
    models the results. Optuna's fixed default of 10 made every search of up to 10 trials random."""
    startup = min(max(2, math.ceil(num_samples / 4)), max(1, num_samples - 1))
    return SamplerPlan(n_startup_trials=startup, num_samples=num_samples, start_points=start_points)


def make_sampler(plan: SamplerPlan, seed: int):
    import optuna

    return optuna.samplers.TPESampler(
        seed=seed, n_startup_trials=plan.n_startup_trials,
        multivariate=plan.multivariate, constant_liar=plan.constant_liar,
    )


def make_searcher(space: SearchSpace, metric: str, mode: str, seed: int, max_epochs: int,
                  plan: SamplerPlan | None = None, start_points: list[dict[str, Any]] = ()):
    """Optuna TPE over the searched keys, told about ASHA's early stops (see PruningAwareOptunaSearch).
    `start_points` (possibly partial: Optuna samples the missing keys) are the first trials."""
    if not space.searched:
        return None
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    class PruningAwareOptunaSearch(OptunaSearch):
        """Ray's OptunaSearch tells Optuna an ASHA-stopped trial COMPLETED with its truncated score,
        so TPE takes a 3-epoch score as final. Tell it PRUNED instead: TPE then ranks the trial by
        its intermediate values, as Optuna's own pruners do."""

        def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
            stopped_early = (
                result is not None and not error and trial_id in self._ot_trials
                and trial_id not in self._completed_trials
                and result.get("training_iteration", max_epochs) < max_epochs
                and not result.get(DIVERGED_KEY)
            )
            if stopped_early:
                self._ot_study.tell(self._ot_trials[trial_id], None, state=optuna.trial.TrialState.PRUNED)
                self._completed_trials.add(trial_id)
                return
            super().on_trial_complete(trial_id, result, error)

    plan = plan or plan_sampler(8)
    searcher = PruningAwareOptunaSearch(space=dict(space.searched), metric=metric, mode=mode,
                                        sampler=make_sampler(plan, seed))
    for point in start_points:  # Ray's own points_to_evaluate refuses partial points
        searcher._ot_study.enqueue_trial(point, skip_if_exists=True)
    return searcher
