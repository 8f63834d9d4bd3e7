"""An experiment as an Optuna study, for Optuna's importance evaluators and plots.

`study_from_experiment` rebuilds an in-memory study from what the trials wrote (Ray's OptunaSearch
keeps its own study in memory, and it is gone when the search ends). Everything downstream takes an
`optuna.Study`, so a study that Optuna stored itself can be handed to the report instead.
"""

from __future__ import annotations

import json
import math
import warnings
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.importance import BaseImportanceEvaluator, PedAnovaImportanceEvaluator, get_param_importances
from optuna.trial import FrozenTrial, TrialState, create_trial

from segtune.analysis.trials import Experiment, TrialSummary
from segtune.search_spaces.space import freeze, thaw

MIN_TRIALS_FOR_IMPORTANCE = 4  # with fewer, any importance estimate is noise
# Our statuses -> Optuna's. Pending and paused trials have nothing to plot and are left out.
STATES = {
    "finished": TrialState.COMPLETE,
    "stopped": TrialState.PRUNED,
    "diverged": TrialState.FAIL,
    "failed": TrialState.FAIL,
    "running": TrialState.RUNNING,
}

optuna.logging.set_verbosity(optuna.logging.WARNING)


def study_from_experiment(exp: Experiment) -> optuna.Study:
    """One Optuna trial per trial, in the order they started: its searched params, its per-epoch values
    of the metric as intermediate values, and its state. A finished or ASHA-stopped trial's value is its
    best epoch's, the value the ranking uses; failed and diverged trials are FAIL (Optuna gives those no
    value), running ones RUNNING. user_attrs keep our trial id, status and rank for labels, and for a
    confirmation trial the search trial it re-measures (`confirm_of`: scored_study leaves those out)."""
    trials = sorted((t for t in exp.trials if t.status in STATES), key=_start_order)
    distributions = {k: d for k, d in _distributions(exp, trials).items() if not d.single()}
    study = optuna.create_study(direction="maximize" if exp.mode == "max" else "minimize")
    for t in trials:
        state = STATES[t.status]
        if state == TrialState.COMPLETE and t.best_value is None:
            continue  # a finished trial that never reported this metric has no point to plot
        study.add_trial(
            create_trial(
                state=state,
                value=t.best_value if state in (TrialState.COMPLETE, TrialState.PRUNED) else None,
                params={k: _scalar(freeze(t.params[k])) for k in distributions},
                distributions=distributions,
                intermediate_values=_intermediate_values(t, exp.metric),
                user_attrs={
                    "trial_id": t.trial_id,
                    "status": t.status,
                    "rank": t.rank,
                    **({"confirm_of": t.confirm_of} if t.confirm_of else {}),
                },
            )
        )
    return study


def _start_order(t: TrialSummary) -> tuple:
    first = t.history[0].get("timestamp") if t.history else None
    return (first is None, first or 0, t.trial_id)


def _intermediate_values(t: TrialSummary, metric: str) -> dict[int, float]:
    values = {}
    for row in t.history:
        value = row.get(metric)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            values[int(row.get("epoch") or row["training_iteration"])] = float(value)
    return values


def _distributions(exp: Experiment, trials: list[TrialSummary]) -> dict[str, BaseDistribution]:
    """The search space's distributions; for keys it does not cover, ones fitted to the values seen.
    List-valued choices become their JSON text, in the distributions and in the params alike."""
    result: dict[str, BaseDistribution] = {}
    for key in exp.searched:
        values = [_scalar(freeze(t.params[key])) for t in trials if key in t.params]
        if len(values) < len(trials) or not values:
            continue  # a key some trials lack cannot enter one study
        if key in exp.distributions:
            result[key] = _scalar_choices(exp.distributions[key])
        elif all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            result[key] = IntDistribution(min(values), max(values))
        elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            low, high = float(min(values)), float(max(values))
            result[key] = FloatDistribution(low, high, log=low > 0 and high / low >= 100)
        else:
            result[key] = CategoricalDistribution(sorted(set(values), key=str))
    return result


def _scalar(value: Any) -> Any:
    """A list-valued choice (anchor sizes [[32], [64]]) as its JSON text: Optuna's plots expect scalars."""
    return json.dumps(thaw(value)) if isinstance(value, tuple) else value


def _scalar_choices(distribution: BaseDistribution) -> BaseDistribution:
    if isinstance(distribution, CategoricalDistribution) and any(isinstance(c, tuple) for c in distribution.choices):
        return CategoricalDistribution([_scalar(c) for c in distribution.choices])
    return distribution


def scored_study(study: optuna.Study) -> optuna.Study:
    """COMPLETE search trials, plus PRUNED ones as COMPLETE with the best intermediate value they reached.
    Optuna's importance, parallel-coordinate, slice and EDF read COMPLETE trials only, and ASHA stops
    most trials of a search: without them those views would rest on the few that ran to the end."""
    scored = optuna.create_study(directions=study.directions)
    pick = max if study.direction == optuna.study.StudyDirection.MAXIMIZE else min
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
        if t.user_attrs.get("confirm_of"):
            continue  # a confirmation re-measures a search trial's point: one point, one trial
        value = t.value
        if t.state == TrialState.PRUNED and t.intermediate_values:
            value = pick(t.intermediate_values.values())
        if value is None:
            continue
        scored.add_trial(_as_complete(t, value))
    return scored


def _as_complete(t: FrozenTrial, value: float) -> FrozenTrial:
    return create_trial(
        value=value,
        params=t.params,
        distributions=t.distributions,
        intermediate_values=t.intermediate_values,
        user_attrs={**t.user_attrs, "state": t.state.name},
    )


def varied_params(study: optuna.Study) -> list[str]:
    """Parameters that take more than one value among the study's trials: the only ones worth plotting."""
    seen: dict[str, set[str]] = {}
    for t in study.get_trials(deepcopy=False):
        for key, value in t.params.items():
            seen.setdefault(key, set()).add(repr(value))
    return sorted(k for k, v in seen.items() if len(v) > 1)


def evaluator_for(n_trials: int) -> tuple[BaseImportanceEvaluator, str]:
    """fANOVA when scikit-learn is installed, else PED-ANOVA, which Optuna implements without extra packages."""
    try:
        import sklearn  # noqa: F401

        return optuna.importance.FanovaImportanceEvaluator(seed=0), "fANOVA (scikit-learn random forest)"
    except ImportError:
        # PED-ANOVA compares the top quantile of trials with all of them; keep >= 2 trials in the top.
        quantile = min(0.5, max(0.1, 2.0 / max(n_trials, 1)))
        return PedAnovaImportanceEvaluator(target_quantile=quantile), (
            f"PED-ANOVA (Optuna's PedAnovaImportanceEvaluator, target quantile {quantile:.2f}; "
            f"scikit-learn is not installed, so fANOVA is unavailable)"
        )


def importance(scored: optuna.Study, metric: str) -> tuple[dict[str, float] | None, str]:
    """(importances, explanation) over a `scored_study`; None with the reason when there is nothing to say."""
    n = len(scored.get_trials(deepcopy=False))
    if not any(t.params for t in scored.get_trials(deepcopy=False)):
        return None, "no searched hyperparameters (a --config run): nothing to rank by importance"
    if n < MIN_TRIALS_FOR_IMPORTANCE:
        return None, (
            f"not enough trials for importance: {n} with a value, at least {MIN_TRIALS_FOR_IMPORTANCE} needed"
        )
    params = varied_params(scored)
    if not params:
        return None, "every searched hyperparameter has one value in these trials: nothing to compare"
    scores = [t.value for t in scored.get_trials(deepcopy=False)]
    if len(set(scores)) == 1:
        return None, f"every trial has the same {metric} ({scores[0]:g}): nothing to attribute"
    evaluator, name = evaluator_for(n)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            values = get_param_importances(scored, evaluator=evaluator, params=params)
    except Exception as exc:  # an evaluator that cannot fit these values: say so instead of failing the page
        return None, f"importance could not be computed ({type(exc).__name__}: {exc})"
    return values, (
        f"{name}, over {n} trials, each with its score (best 3-epoch mean of {metric}); ASHA-stopped "
        f"trials enter with the value they reached before being stopped, failed, diverged and running "
        f"ones not at all"
    )


def labels(study: optuna.Study) -> dict[int, str]:
    """Trial number -> '#rank id (status)' for a rebuilt study; Optuna's own 'Trial<n>' for any other."""
    result: dict[int, str] = {}
    for t in study.get_trials(deepcopy=False):
        attrs: dict[str, Any] = t.user_attrs
        result[t.number] = (
            f"#{attrs['rank']} {attrs['trial_id']} ({attrs['status']})" if "trial_id" in attrs else f"Trial{t.number}"
        )
    return result
