"""Ranking the trials of one or several experiments: one order, one best trial, one table.

Every consumer (the closing summary, `rank.py`, `report.py`, `export_best.py`) takes the best trial
from `best_trial` on trials ranked by `rank_trials`, so they all name the same one.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from analysis.costs import COST_KEYS, has_costs
from cocodata.evaluator import METRIC_KEYS
from search_spaces.space import thaw

if TYPE_CHECKING:  # trials.py ranks what it reads with this module: no import back at run time
    from analysis.trials import Experiment, TrialSummary

TABLE_METRICS = ("segm/AP", "segm/AP50", "bbox/AP", "bbox/AP50")  # the terminal table's metric columns
# Worst-first order of trials that have no value for the ranking metric.
_NO_VALUE_ORDER = ("running", "pending", "paused", "diverged", "failed")


def rank_trials(trials: list[TrialSummary], mode: str) -> list[TrialSummary]:
    """Best value first (ties: healthy trials, then more epochs, then id); trials without a value last.
    Sets `rank`, in place."""
    sign = -1.0 if mode == "max" else 1.0

    def key(t: TrialSummary) -> tuple:
        if t.best_value is None:
            return (1, _NO_VALUE_ORDER.index(t.status) if t.status in _NO_VALUE_ORDER else 0, 0, 0, t.trial_id)
        return (0, sign * t.best_value, t.status in ("failed", "diverged"), -t.epochs, t.trial_id)

    trials.sort(key=key)
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


def table_rows(trials: list[TrialSummary], metric: str, searched: list[str],
               with_experiment: bool = False, front: set[Path] | None = None) -> list[dict[str, Any]]:
    """Every column of the ranking (CSV); the terminal and Markdown tables show a subset. `front`:
    the trials (directories) on the accuracy-latency Pareto front, marked in a `pareto` column."""
    costs = COST_KEYS if has_costs(trials) else ()
    rows = []
    for t in trials:
        row: dict[str, Any] = {"rank": t.rank}
        if with_experiment:
            row["experiment"] = t.experiment
        row.update({
            "trial": t.trial_id, "framework": t.framework, "model": t.model, "status": t.status,
            "end_reason": t.end_reason, "optuna_trial": t.optuna_trial, "detail": t.detail, "epochs": t.epochs,
            "best_epoch": t.best_epoch, f"{metric}@best": t.best_value,
        })
        row.update({f"{k}@best": t.best_metrics.get(k) for k in METRIC_KEYS})
        row.update({f"{k}@last": t.last_metrics.get(k) for k in METRIC_KEYS})
        row.update({k: t.costs.get(k) for k in costs})
        if front is not None:
            row["pareto"] = "yes" if t.path in front else ""
        if any(x.pareto_rank is not None for x in trials):  # a multi-objective search's own ranking
            row["pareto_rank"] = t.pareto_rank
        row.update({f"config/{k}": thaw(t.params.get(k)) for k in searched})
        row.update({f"config/{k}": thaw(v) for k, v in sorted(t.params.items()) if k not in searched})
        row.update({"wall_time_s": t.wall_time_s, "checkpoint": str(t.checkpoint or ""), "reason": t.reason,
                    "path": str(t.path)})
        rows.append(row)
    return rows


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
