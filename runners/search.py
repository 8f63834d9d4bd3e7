"""How the search proposes and judges trials: Optuna's TPE through Ray's OptunaSearch, on the
experiment's persistent study (runners/study.py: StudySearch)."""
from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

from search_spaces.conditional import ConditionalSpace
from search_spaces.space import SearchSpace

if TYPE_CHECKING:
    from runners.endings import EndLog
    from runners.study import StudyPlace, StudySearch


def make_searcher(space: SearchSpace | ConditionalSpace, metric: str | list[str], mode: str | list[str], seed: int,
                  *, study: StudyPlace, end_log: EndLog) -> StudySearch | None:
    """Optuna TPE over the searched keys, in `study`, told why each trial ended (`end_log`):
    PRUNED for ASHA's and the time budget's cuts, so TPE ranks them by their intermediate values.
    A ConditionalSpace (several frameworks) is Optuna define-by-run; lists of metrics and modes
    are several objectives (Optuna's TPE is multi-objective)."""
    if not space.searched:
        return None
    import optuna

    from runners.study import StudySearch

    conditional = isinstance(space, ConditionalSpace)
    # group=True: TPE models each framework's parameters together with the trials that have them
    # (a conditional space has no one set of parameters every trial shares).
    with warnings.catch_warnings():  # `group` is "experimental" in Optuna 5
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, max(2, len(space.searched))),
                                             multivariate=conditional, group=conditional)
    return StudySearch(space=space if conditional else dict(space.searched), metric=metric, mode=mode,
                       sampler=sampler, place=study, end_log=end_log)
