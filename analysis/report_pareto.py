"""The report's "Accuracy against latency" section: every trial's ranking metric against its measured
latency, the Pareto front highlighted, and a table of the trials on it (what export_best.py --pareto
exports). A section of its own so that the page around it can change without touching it.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a display
import matplotlib.pyplot as plt
from matplotlib.figure import Figure

from segtune.analysis.costs import format_cost, trial_latency
from segtune.analysis.pareto import LATENCY, accuracy_latency, front_of_trials
from segtune.analysis.ranking import format_value
from segtune.analysis.trials import TrialSummary

PNG_NAME = "pareto.png"
_TABLE_COSTS = (
    ("latency (ms)", LATENCY),
    ("FPS", "cost/fps"),
    ("params (M)", "cost/params_m"),
    ("train mem (MB)", "cost/train_mem_mb"),
    ("infer mem (MB)", "cost/infer_mem_mb"),
    ("epoch (s)", "cost/epoch_time_s"),
)


def plot_pareto(trials: Sequence[TrialSummary], front: Sequence[TrialSummary], metric: str, mode: str) -> Figure:
    """One dot per trial (colour: framework when there are several, else experiment when there are
    several); the front as a step line."""
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    timed = [t for t in trials if trial_latency(t) is not None and t.best_value is not None]
    by_framework = len({t.framework for t in timed}) > 1
    group_of = (lambda t: t.framework) if by_framework else (lambda t: t.experiment)
    groups = sorted({group_of(t) for t in timed})
    for i, group in enumerate(groups):
        members = [t for t in timed if group_of(t) == group]
        ax.scatter(
            [trial_latency(t) for t in members],
            [t.best_value for t in members],
            s=28,
            alpha=0.75,
            color=plt.cm.tab10(i % 10),
            label=group if len(groups) > 1 else "trials",
        )
    ordered = sorted(front, key=trial_latency)
    xs, ys = [trial_latency(t) for t in ordered], [t.best_value for t in ordered]
    ax.step(xs, ys, where="post", color="black", lw=1.2, zorder=1)
    ax.scatter(xs, ys, s=90, facecolors="none", edgecolors="red", linewidths=1.8, zorder=3, label="Pareto front")
    for t, x, y in zip(ordered, xs, ys):
        ax.annotate(t.trial_id, (x, y), textcoords="offset points", xytext=(5, 5), fontsize=8)
    if xs and max(xs) > 10 * min(xs):
        ax.set_xscale("log")
    ax.set_xlabel("latency, ms per image (batch 1, on each trial's device)")
    ax.set_ylabel(f"{metric} at the best epoch ({'higher' if mode == 'max' else 'lower'} is better)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def pareto_section(trials: Sequence[TrialSummary], metric: str, mode: str, out: Path) -> str:
    """The section's body HTML (the plot embedded as base64, and written to out/pareto.png)."""
    if not any(trial_latency(t) is not None for t in trials):
        return (
            "<p>No trial recorded <code>cost/latency_ms</code> (the experiment ran before segtune measured costs).</p>"
        )
    front = sorted(front_of_trials(trials, accuracy_latency(metric, mode), metric), key=trial_latency)
    buffer = io.BytesIO()
    fig = plot_pareto(trials, front, metric, mode)
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    (out / PNG_NAME).write_bytes(buffer.getvalue())
    image = base64.b64encode(buffer.getvalue()).decode("ascii")
    head = ["trial", f"{metric} (best)", *(name for name, _ in _TABLE_COSTS)]
    rows = "".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape(c)}</td>"
            for c in [
                t.trial_id,
                format_value(t.best_value, metric),
                *(format_cost(t.costs.get(k), k) for _, k in _TABLE_COSTS),
            ]
        )
        + "</tr>"
        for t in front
    )
    device = next((str(t.costs["cost/device"]) for t in trials if "cost/device" in t.costs), "")
    return (
        f"<p>Each trial's <code>{html.escape(metric)}</code> at its best epoch against its measured "
        f"latency: the median of timed single-image inferences (batch 1, the image in memory to full-resolution "
        f"masks in host memory), on the trial's own device{f' ({html.escape(device)})' if device else ''}; "
        f"a CPU's latency says nothing about a GPU's. Circled: the Pareto front, the trials no other trial "
        f"beats on both (<code>rank.py</code> marks them; <code>export_best.py --pareto</code> exports them).</p>"
        f'<img alt="accuracy against latency" src="data:image/png;base64,{image}">'
        '<div class="scroll"><table><tr>'
        + "".join(f"<th>{html.escape(h)}</th>" for h in head)
        + "</tr>"
        + rows
        + "</table></div>"
    )
