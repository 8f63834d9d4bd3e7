"""The searcher: Optuna's TPE (or random, as a baseline) through Ray's OptunaSearch, on the experiment's
persistent study (runners/search/study.py: StudySearch), with the settings planned in runners/plan/budget.py."""

from __future__ import annotations

import dataclasses
import warnings

from segtune.runners.plan.budget import SamplerPlan, plan_sampler
from segtune.runners.search.endings import EndLog
from segtune.runners.search.study import StudyPlace, StudySearch
from segtune.search_spaces.conditional import ConditionalSpace
from segtune.search_spaces.space import SearchSpace


def make_sampler(plan: SamplerPlan, seed: int):
    import optuna

    if plan.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    with warnings.catch_warnings():  # `group` and `constant_liar` are "experimental" in Optuna
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(
            seed=seed,
            n_startup_trials=plan.n_startup_trials,
            multivariate=plan.multivariate,
            constant_liar=plan.constant_liar,
            group=plan.group,
        )


def make_searcher(
    space: SearchSpace | ConditionalSpace,
    metric: str | list[str],
    mode: str | list[str],
    seed: int,
    *,
    study: StudyPlace,
    end_log: EndLog,
    plan: SamplerPlan | None = None,
) -> StudySearch | None:
    """Optuna's sampler (`plan`: TPE, or random as a baseline) over the searched keys, in `study`, told
    why each trial ended (`end_log`): PRUNED for ASHA's and the budgets' cuts, so TPE ranks them by their
    intermediate values. The study's `first_points` (possibly partial: Optuna samples the missing keys)
    are tried first. A ConditionalSpace (several frameworks) is Optuna define-by-run; lists of metrics
    and modes are several objectives (Optuna's TPE is multi-objective)."""
    if not space.searched:
        return None
    from segtune.runners.search.study import StudySearch

    conditional = isinstance(space, ConditionalSpace)
    plan = dataclasses.replace(plan or plan_sampler(8), group=conditional)
    return StudySearch(
        space=space if conditional else dict(space.searched),
        metric=metric,
        mode=mode,
        sampler=make_sampler(plan, seed),
        place=study,
        end_log=end_log,
    )
