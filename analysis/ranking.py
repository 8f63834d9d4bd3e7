"""Ranking the trials of one or several experiments: one order, one best trial, one table.

Trials are ranked by their score (`core/score.py`). Confirmed configurations (`analysis/confirmed.py`)
come first, by the mean of their new seeds: each one's confirmation trials (best seed first), then
its original search trial. Every consumer (the closing summary, `rank.py`, `report.py`,
`export_best.py`) takes the best trial from `best_trial` on trials ranked by `rank_trials`, so they
all name the same one: the best seed of the best confirmed configuration, or without confirmation
the trial with the best score.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segtune.analysis.confirmed import confirmed_configs
from segtune.analysis.costs import COST_KEYS, has_costs
from segtune.cocodata.evaluator import METRIC_KEYS
from segtune.search_spaces.space import thaw

if TYPE_CHECKING:  # trials.py ranks what it reads with this module: no import back at run time
    from segtune.analysis.trials import Experiment, TrialSummary

TABLE_METRICS = ("segm/AP", "segm/AP50", "bbox/AP", "bbox/AP50")  # the terminal table's metric columns
# Worst-first order of trials that have no value for the ranking metric.
_NO_VALUE_ORDER = ("running", "pending", "paused", "diverged", "failed")


def rank_trials(trials: list[TrialSummary], mode: str) -> list[TrialSummary]:
    """Confirmed configurations first (by mean); then the best score first (ties: healthy trials, then
    more epochs, then id); trials without a value last. Sorts and sets `rank`, in place."""
    sign = -1.0 if mode == "max" else 1.0

    def key(t: TrialSummary) -> tuple:
        if t.best_value is None:
            return (1, _NO_VALUE_ORDER.index(t.status) if t.status in _NO_VALUE_ORDER else 0, 0, 0, t.trial_id)
        return (0, sign * t.best_value, t.status in ("failed", "diverged"), -t.epochs, t.trial_id)

    confirmed = [t for group in confirmed_configs(trials, mode) if group.mean is not None for t in group.members]
    placed = {id(t) for t in confirmed}
    trials[:] = confirmed + sorted((t for t in trials if id(t) not in placed), key=key)
    for i, trial in enumerate(trials, 1):
        trial.rank = i
    return trials


def merge_ranked(experiments: list[Experiment]) -> list[TrialSummary]:
    """All trials of several experiments in one ranking (their metric and mode must agree)."""
    trials = []
    for exp in experiments:
        for t in exp.trials:
            t.experiment = exp.name
            trials.append(t)
    return rank_trials(trials, experiments[0].mode) if experiments else []


def table_rows(
    trials: list[TrialSummary],
    metric: str,
    searched: list[str],
    with_experiment: bool = False,
    front: set[Path] | None = None,
) -> list[dict[str, Any]]:
    """Every column of the ranking (CSV); the terminal and Markdown tables show a subset. `score` is the
    ranking value; `{metric} mean`, `{metric} sd` and `seeds` describe a confirmed configuration (on its
    original's and its confirmation trials' rows): the mean and sd of the new seeds' scores. `front`:
    the trials (directories) on the accuracy-latency Pareto front, marked in a `pareto` column."""
    costs = COST_KEYS if has_costs(trials) else ()
    groups = {g.original_id: g for g in confirmed_configs(trials, "max")}  # the order does not matter here
    rows = []
    for t in trials:
        row: dict[str, Any] = {"rank": t.rank}
        if with_experiment:
            row["experiment"] = t.experiment
        row.update(
            {
                "trial": t.trial_id,
                "framework": t.framework,
                "model": t.model,
                "status": t.status,
                "end_reason": t.end_reason,
                "optuna_trial": t.optuna_trial,
                "detail": t.detail,
                "epochs": t.epochs,
                "score": t.best_value,
                "best_epoch": t.best_epoch,
                f"{metric}@best": value_at_best(t, metric),
                "confirm_of": t.confirm_of or "",
                "confirm_seed": t.confirm_seed or "",
            }
        )
        group = groups.get(t.confirm_of or t.trial_id)
        row.update(
            {
                f"{metric} mean": group.mean if group else None,
                f"{metric} sd": group.sd if group else None,
                "seeds": group.seeds if group else None,
            }
        )
        row.update({f"{k}@best": t.best_metrics.get(k) for k in METRIC_KEYS if k != metric})
        row.update({f"{k}@last": t.last_metrics.get(k) for k in METRIC_KEYS})
        row.update({k: t.costs.get(k) for k in costs})
        if front is not None:
            row["pareto"] = "yes" if t.path in front else ""
        if any(x.pareto_rank is not None for x in trials):  # a multi-objective search's own ranking
            row["pareto_rank"] = t.pareto_rank
        row.update({f"config/{k}": thaw(t.params.get(k)) for k in searched})
        row.update({f"config/{k}": thaw(v) for k, v in sorted(t.params.items()) if k not in searched})
        row.update(
            {
                "wall_time_s": t.wall_time_s,
                "checkpoint": str(t.checkpoint or ""),
                "reason": t.reason,
                "path": str(t.path),
            }
        )
        rows.append(row)
    return rows


def value_at_best(trial: TrialSummary, metric: str) -> float | None:
    """The metric at the trial's best epoch (the last epoch of its best window)."""
    for row in trial.history:
        if int(row.get("epoch") or row.get("training_iteration") or 0) == trial.best_epoch:
            value = row.get(metric)
            return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None
    return None


def best_trial(trials: list[TrialSummary]) -> TrialSummary | None:
    """The best trial of ranked `trials`: the first one with a value of the ranking metric."""
    return next((t for t in sorted(trials, key=lambda t: t.rank or 0) if t.best_value is not None), None)


def format_value(value: Any, key: str = "") -> str:
    """Short text for tables: AP in percent with one decimal, -1 ('no GT of that size') as '-'."""
    if value is None or value == "":
        return ""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if not math.isfinite(value):
        return str(value)
    if key.startswith(("segm/", "bbox/")) and "/AP" in key:
        return "-" if value < 0 else f"{value:.1f}"
    if isinstance(value, int):
        return str(value)
    return f"{value:.4g}"
