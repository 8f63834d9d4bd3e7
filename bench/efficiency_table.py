"""The figures of `bench/search_efficiency.py`, from the raw results of its cells (one search
method x dataset x search seed each): best-so-far curves over training epochs, epochs to reach a
target, and one row per method. No training here: plain functions of the recorded numbers.

A cell's `records` are its search's epochs, one per trained epoch of any trial: {"run", "epoch",
"time" (when the epoch was scored; orders the epochs of concurrent trials), "segm/AP", "bbox/AP"}.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from typing import Any

METRIC = "segm/AP"
RANDOM = "segtune-random"  # the method whose final best is the target the others race to


def best_so_far(records: Iterable[dict[str, Any]], metric: str = METRIC) -> list[tuple[int, float]]:
    """(epochs spent so far, best metric so far) after every epoch of the search, in time order."""
    ordered = sorted(records, key=lambda r: (float(r["time"]), str(r["run"]), int(r["epoch"])))
    curve, best = [], -math.inf
    for spent, record in enumerate(ordered, 1):
        value = record.get(metric)
        if isinstance(value, (int, float)) and math.isfinite(value):
            best = max(best, float(value))
        curve.append((spent, best))
    return curve


def epochs_to_reach(curve: Sequence[tuple[int, float]], target: float) -> int | None:
    """The epochs spent when the best-so-far first reached `target`; None if it never did."""
    return next((spent for spent, best in curve if best >= target), None)


def search_best(records: Sequence[dict[str, Any]], metric: str = METRIC) -> float | None:
    curve = best_so_far(records, metric)
    return curve[-1][1] if curve and math.isfinite(curve[-1][1]) else None


def mean_sd(values: Sequence[float]) -> tuple[float | None, float | None]:
    values = [v for v in values if v is not None]
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def random_target(cells: Sequence[dict[str, Any]]) -> float | None:
    """Random search's final best, as the mean over its search seeds (None without random cells)."""
    bests = [search_best(c["records"]) for c in cells if c["method"] == RANDOM]
    return mean_sd([b for b in bests if b is not None])[0]


def method_rows(cells: Sequence[dict[str, Any]], methods: Sequence[str]) -> list[dict[str, Any]]:
    """One row per method of one dataset's cells, in `methods` order (methods without cells are left out)."""
    target = random_target(cells)
    rows = []
    for method in methods:
        mine = sorted((c for c in cells if c["method"] == method), key=lambda c: c["seed"])
        if not mine:
            continue
        reach = [epochs_to_reach(best_so_far(c["records"]), target) if target is not None else None for c in mine]
        reached = [r for r in reach if r is not None]
        confirmed = [c["confirm"][METRIC] for c in mine]
        confirmed_bbox = [c["confirm"]["bbox/AP"] for c in mine]
        rows.append(
            {
                "method": method,
                "seeds": len(mine),
                "epochs_spent": statistics.fmean(len(c["records"]) for c in mine),
                "search_best": mean_sd([search_best(c["records"]) for c in mine]),
                "confirmed": mean_sd(confirmed),
                "confirmed_bbox": mean_sd(confirmed_bbox),
                "target": target,
                "reached": len(reached),
                "epochs_to_target": statistics.fmean(reached) if reached else None,
                "search_min": statistics.fmean(c["search_s"] for c in mine) / 60,
                "confirm_min": statistics.fmean(c["confirm"]["wall_s"] for c in mine) / 60,
            }
        )
    return rows


def _pm(pair: tuple[float | None, float | None]) -> str:
    mean, sd = pair
    return "-" if mean is None else f"{mean:.1f} ± {sd:.1f}"


def format_table(rows: Sequence[dict[str, Any]], labels: dict[str, str]) -> str:
    """A Markdown table: one line per method."""
    head = (
        "| method | seeds | epochs spent | best segm/AP in search | confirmed segm/AP | confirmed bbox/AP "
        "| epochs to reach random's best | search min | confirm min |\n|---|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for row in rows:
        if row["target"] is None:
            reach = "-"
        elif row["epochs_to_target"] is None:
            reach = f"never (0/{row['seeds']})"
        else:
            reach = f"{row['epochs_to_target']:.0f} ({row['reached']}/{row['seeds']})"
        lines.append(
            f"| {labels.get(row['method'], row['method'])} | {row['seeds']} | {row['epochs_spent']:.0f} "
            f"| {_pm(row['search_best'])} | {_pm(row['confirmed'])} | {_pm(row['confirmed_bbox'])} "
            f"| {reach} | {row['search_min']:.1f} | {row['confirm_min']:.1f} |"
        )
    return "\n".join(lines)


def verdict(rows: Sequence[dict[str, Any]], default: str, rivals: Sequence[str]) -> list[str]:
    """The issue's two goals, in words and numbers: the default reaches random search's final best
    with at most half of random's epochs, and its confirmed segm/AP beats each rival's."""
    by_method = {row["method"]: row for row in rows}
    lines = []
    mine, random_row = by_method.get(default), by_method.get(RANDOM)
    if mine and random_row and mine["target"] is not None:
        if mine["epochs_to_target"] is None:
            lines.append(f"{default} never reached random search's final best ({mine['target']:.1f}): goal not met")
        else:
            ratio = mine["epochs_to_target"] / random_row["epochs_spent"]
            met = "met" if ratio <= 0.5 and mine["reached"] == mine["seeds"] else "not met"
            lines.append(
                f"{default} reached random search's final best ({mine['target']:.1f}) after "
                f"{mine['epochs_to_target']:.0f} epochs ({mine['reached']}/{mine['seeds']} seeds), "
                f"{ratio:.2f}x random's {random_row['epochs_spent']:.0f}: goal (<= 0.5x) {met}"
            )
    for rival in rivals:
        theirs = by_method.get(rival)
        if not (mine and theirs and mine["confirmed"][0] is not None and theirs["confirmed"][0] is not None):
            continue
        difference = mine["confirmed"][0] - theirs["confirmed"][0]
        lines.append(
            f"{default} vs {rival}: confirmed segm/AP {_pm(mine['confirmed'])} vs {_pm(theirs['confirmed'])} "
            f"at {mine['epochs_spent']:.0f} vs {theirs['epochs_spent']:.0f} epochs: "
            + (f"beats it by {difference:.1f}" if difference > 0 else f"does not beat it ({difference:+.1f})")
        )
    return lines
