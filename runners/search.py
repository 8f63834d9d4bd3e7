"""How the search proposes and judges trials: Optuna's TPE through Ray's OptunaSearch, on the
experiment's persistent study (runners/study.py: StudySearch)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from search_spaces.space import SearchSpace

if TYPE_CHECKING:
    from runners.endings import EndLog
    from runners.study import StudyPlace, StudySearch


def make_searcher(space: SearchSpace, metric: str, mode: str, seed: int, *, study: StudyPlace,
                  end_log: EndLog, sampler_name: str = "tpe") -> StudySearch | None:
    """Optuna TPE over the searched keys, in `study`, told why each trial ended (`end_log`):
    PRUNED for ASHA's and the budgets' cuts, so TPE ranks them by their intermediate values.
    `sampler_name="random"`: Optuna's RandomSampler instead, the baseline TPE is measured against."""
    if not space.searched:
        return None
    import optuna

    from runners.study import StudySearch

    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, max(2, len(space.searched))))
    if sampler_name == "random":
        sampler = optuna.samplers.RandomSampler(seed=seed)
    return StudySearch(space=dict(space.searched), metric=metric, mode=mode, sampler=sampler,
                       place=study, end_log=end_log)
