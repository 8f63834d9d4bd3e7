"""The measured answer to "YOLO11-seg or Mask R-CNN?": one column per framework, filled from an experiment.

The rows are those of the hand-written comparisons people read ("speed: 30-60 FPS vs 5-15 FPS;
accuracy: high vs very high; memory; training time"), each a measurement of this experiment's
trials on the user's data: per framework, its best trial by the ranking metric (segm/AP by
default) and what that trial's model costs (cost/* at its best epoch: runners/trial/cost.py), plus its
fastest trial, how many trials are on the accuracy-latency Pareto front, and where confirmation ran,
its best configuration's mean and sd over the new seeds. Shown by rank.py, the
report (first section) and written into ranking.md.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from segtune.analysis.confirmed import ConfirmedConfig, confirmed_configs, describe
from segtune.analysis.costs import format_cost, pareto_paths, trial_latency
from segtune.analysis.ranking import format_value

if TYPE_CHECKING:
    from segtune.analysis.trials import TrialSummary

COMPARISON_NOTE = (
    "per framework: its best trial by the ranking metric, and what that trial's model costs at its best "
    "epoch; latency: median of timed single-image inferences at batch 1 on the trial's own device; "
    "memory: peak, GPU memory on CUDA, the process's resident memory on a CPU"
)


@dataclass(frozen=True)
class Column:
    framework: str
    trials: list[TrialSummary]  # the framework's trials, in ranking order
    best: TrialSummary | None  # the best by the ranking metric


def frameworks_in(trials: Sequence[TrialSummary]) -> list[str]:
    """The frameworks the trials trained, in order of first appearance in the ranking."""
    return list(dict.fromkeys(t.framework for t in trials if t.framework))


def columns(trials: Sequence[TrialSummary], mode: str) -> list[Column]:
    sign = 1.0 if mode == "max" else -1.0
    result = []
    for framework in frameworks_in(trials):
        own = [t for t in trials if t.framework == framework]
        scored = [t for t in own if t.best_value is not None]
        best = max(scored, key=lambda t: (sign * t.best_value, -(t.rank or 0))) if scored else None
        result.append(Column(framework, own, best))
    return result


def comparison_rows(trials: Sequence[TrialSummary], metric: str, mode: str) -> list[tuple[str, list[str]]]:
    """(what, one cell per framework) rows; the frameworks are `columns(...)`'s."""
    cols = columns(trials, mode)
    front = pareto_paths(trials, metric, mode) if any(trial_latency(t) is not None for t in trials) else set()

    def cost(t: TrialSummary | None, key: str) -> str:
        return format_cost(t.costs.get(key), key) if t is not None else ""

    def at_best(key: str, label: str) -> tuple[str, list[str]]:
        return label, [
            format_value(c.best.best_value if key == metric else c.best.best_metrics.get(key), key) if c.best else ""
            for c in cols
        ]

    rows = [("best trial (model)", [f"{c.best.trial_id} ({c.best.model})" if c.best else "none scored" for c in cols])]
    rows.append(at_best(metric, f"{metric} (best trial)"))
    groups = [g for g in confirmed_configs(trials, mode) if g.mean is not None]
    if groups:  # the new seeds' mean is the figure to compare; one seed's best is partly luck
        rows.append(
            (f"{metric} confirmed (best configuration, new seeds)", [_confirmed(groups, c.framework) for c in cols])
        )
    for key in ("segm/AP", "bbox/AP", "segm/AP50"):
        if key != metric:
            rows.append(at_best(key, f"{key} (best trial)"))
    rows += [
        ("latency, ms per image (batch 1)", [cost(c.best, "cost/latency_ms") for c in cols]),
        ("FPS (1000 / latency)", [cost(c.best, "cost/fps") for c in cols]),
        ("training memory, peak MB", [cost(c.best, "cost/train_mem_mb") for c in cols]),
        ("inference memory, peak MB", [cost(c.best, "cost/infer_mem_mb") for c in cols]),
        ("time to train, s (to the best epoch / all its epochs)", [_train_times(c.best) for c in cols]),
        ("time per epoch, s", [cost(c.best, "cost/epoch_time_s") for c in cols]),
        ("model size, M parameters", [cost(c.best, "cost/params_m") for c in cols]),
        ("fastest trial: ms (its " + metric + ")", [_fastest(c, metric) for c in cols]),
        (
            "trials (on the accuracy-latency front)",
            [f"{len(c.trials)} ({sum(t.path in front for t in c.trials)})" for c in cols],
        ),
        ("measured on", [str(c.best.costs.get("cost/device", "")) if c.best else "" for c in cols]),
    ]
    return rows


def _confirmed(groups: list[ConfirmedConfig], framework: str) -> str:
    """The framework's best confirmed configuration (groups come best first), as mean +- sd."""
    own = [g for g in groups if (g.original or g.confirmations[0]).framework == framework]
    return f"{describe(own[0])} ({own[0].original_id})" if own else "not confirmed"


def _train_times(trial: TrialSummary | None) -> str:
    """The framework's training time up to the trial's best epoch, and over every epoch it trained."""
    if trial is None or "cost/train_time_s" not in trial.costs:
        return ""
    total = next((row["cost/train_time_s"] for row in reversed(trial.history) if "cost/train_time_s" in row), None)
    best = format_cost(trial.costs["cost/train_time_s"], "cost/train_time_s")
    return f"{best} / {format_cost(total, 'cost/train_time_s')}" if total is not None else best


def _fastest(column: Column, metric: str) -> str:
    timed = [t for t in column.trials if trial_latency(t) is not None and t.best_value is not None]
    if not timed:
        return ""
    fastest = min(timed, key=trial_latency)
    return f"{trial_latency(fastest):.1f} ({format_value(fastest.best_value, metric)})"


def _header(trials: Sequence[TrialSummary], mode: str) -> list[str]:
    return [c.framework for c in columns(trials, mode)]


def markdown_comparison(trials: Sequence[TrialSummary], metric: str, mode: str) -> str:
    header = ["", *_header(trials, mode)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += [
        "| " + " | ".join([what, *cells]).replace("\n", " ") + " |"
        for what, cells in comparison_rows(trials, metric, mode)
    ]
    return "\n".join(lines)


def text_comparison(trials: Sequence[TrialSummary], metric: str, mode: str) -> str:
    rows = [["", *_header(trials, mode)], *([what, *cells] for what, cells in comparison_rows(trials, metric, mode))]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))).rstrip()
        for row in rows
    )


def html_comparison(trials: Sequence[TrialSummary], metric: str, mode: str) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in ["", *_header(trials, mode)])
    body = "".join(
        "<tr>"
        + f'<td class="l">{html.escape(what)}</td>'
        + "".join(f"<td>{html.escape(c)}</td>" for c in cells)
        + "</tr>"
        for what, cells in comparison_rows(trials, metric, mode)
    )
    return f'<div class="scroll"><table><tr>{head}</tr>{body}</table></div>'


def several_frameworks(trials: Sequence[TrialSummary]) -> bool:
    return len(frameworks_in(trials)) > 1
