"""How the search proposes and judges trials: Optuna's TPE through Ray's OptunaSearch."""
from __future__ import annotations

from core.record import DIVERGED_KEY
from search_spaces.space import SearchSpace


def make_searcher(space: SearchSpace, metric: str, mode: str, seed: int, max_epochs: int, *,
                  sampler_name: str = "tpe"):
    """Optuna TPE over the searched keys, told about ASHA's early stops (see PruningAwareOptunaSearch).
    `sampler_name="random"`: Optuna's RandomSampler instead, the baseline TPE is measured against."""
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

    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, max(2, len(space.searched))))
    if sampler_name == "random":
        sampler = optuna.samplers.RandomSampler(seed=seed)
    return PruningAwareOptunaSearch(space=dict(space.searched), metric=metric, mode=mode, sampler=sampler)
