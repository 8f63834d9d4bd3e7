"""Pareto fronts: which trials no other trial beats on every objective at once.

A point dominates another when it is at least as good on every objective and better on one.
Points that tie on every objective (duplicates) do not dominate each other: all of them are on a
front together. Points with a missing objective (None, NaN, inf) are on no front.

`pareto_front` is the non-dominated set; `pareto_ranks` sorts all points into fronts (1 = the
front, 2 = the front once the first is removed, ...), which is how a multi-objective search ranks.
`trial_objectives` reads the objectives of ranked trials (the accuracy at each trial's best epoch
and its recorded cost/* metrics), so rank, report and export mark the same trials.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from segtune.analysis.trials import TrialSummary

Objective = tuple[str, str]  # (metric name, "max" | "min")
LATENCY = "cost/latency_ms"


def _usable(point: Sequence[float | None]) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in point)


def _signs(directions: Sequence[str], width: int) -> list[float]:
    if len(directions) != width:
        raise ValueError(f"{len(directions)} directions for points of {width} objectives")
    bad = [d for d in directions if d not in ("max", "min")]
    if bad:
        raise ValueError(f"directions must be 'max' or 'min', got {bad}")
    return [1.0 if d == "min" else -1.0 for d in directions]  # everything as minimisation


def _dominates(a: Sequence[float], b: Sequence[float]) -> bool:
    return all(x <= y for x, y in zip(a, b)) and any(x < y for x, y in zip(a, b))


def pareto_ranks(points: Sequence[Sequence[float | None]], directions: Sequence[str]) -> list[int | None]:
    """The front each point is on (1 = non-dominated), None for a point with a missing value."""
    if not points:
        return []
    signs = _signs(directions, len(points[0]))
    costs = {i: [s * float(v) for s, v in zip(signs, p)] for i, p in enumerate(points) if _usable(p)}
    ranks: list[int | None] = [None] * len(points)
    remaining, rank = set(costs), 1
    while remaining:
        front = {i for i in remaining if not any(_dominates(costs[j], costs[i]) for j in remaining if j != i)}
        for i in front:
            ranks[i] = rank
        remaining -= front
        rank += 1
    return ranks


def pareto_front(points: Sequence[Sequence[float | None]], directions: Sequence[str]) -> list[int]:
    """Indices of the non-dominated points, in input order."""
    return [i for i, r in enumerate(pareto_ranks(points, directions)) if r == 1]


# ---- trials ------------------------------------------------------------------------------------
def objective_value(trial: TrialSummary, key: str, ranking_metric: str) -> float | None:
    """A trial's value of `key`: the ranking metric's best value, a COCO metric at that epoch, or a
    cost recorded in that epoch's row."""
    if key == ranking_metric:
        return trial.best_value
    value = trial.best_metrics.get(key, trial.costs.get(key))
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def trial_objectives(
    trials: Sequence[TrialSummary], objectives: Sequence[Objective], ranking_metric: str
) -> list[list[float | None]]:
    return [[objective_value(t, key, ranking_metric) for key, _ in objectives] for t in trials]


def front_of_trials(
    trials: Sequence[TrialSummary], objectives: Sequence[Objective], ranking_metric: str
) -> list[TrialSummary]:
    """The trials on the Pareto front of `objectives`, in the order given (ranked order stays ranked)."""
    points = trial_objectives(trials, objectives, ranking_metric)
    return [trials[i] for i in pareto_front(points, [d for _, d in objectives])]


def rank_by_objectives(
    trials: list[TrialSummary], objectives: Sequence[Objective], ranking_metric: str
) -> list[TrialSummary]:
    """How a multi-objective search ranks: by Pareto rank over `objectives` (each trial's values at
    its best epoch), then by the order the trials already have (the first objective's); trials
    without every value last. Sets `pareto_rank` and `rank`; sorts in place."""
    ranks = pareto_ranks(trial_objectives(trials, objectives, ranking_metric), [d for _, d in objectives])
    for trial, rank in zip(trials, ranks):
        trial.pareto_rank = rank
    trials.sort(key=lambda t: (t.pareto_rank is None, t.pareto_rank or 0, t.rank or 0))
    for i, trial in enumerate(trials, 1):
        trial.rank = i
    return trials


def accuracy_latency(metric: str, mode: str) -> list[Objective]:
    """The trade-off rank, report and export show: the ranking metric against latency."""
    return [(metric, mode), (LATENCY, "min")]
