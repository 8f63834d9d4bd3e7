"""The report's plots: interactive ones (Optuna's plotly figures) for the screen, static PNGs (matplotlib)
for print and PDF, and for anyone who wants the images beside the page.

The interactive figures take an `optuna.Study` (see analysis/study.py): the full study for the learning
curves, its `scored_study` for the rest. Static plots that need the trials' history take the Experiment.
"""

from __future__ import annotations

import io
import math
import warnings
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, never a display
import matplotlib.pyplot as plt
import optuna
import plotly.graph_objects as go
import plotly.io as pio
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator
from optuna.trial import TrialState

from segtune.analysis.study import evaluator_for, labels, varied_params
from segtune.analysis.trials import Experiment, TrialSummary

_MAX_LEGEND = 12
SLICE_PER_ROW = 3  # Optuna fixes a slice figure's width at 300 px per panel beyond three: at most three a figure
PLOT_HEIGHT = 440
_PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}


# ---- interactive (plotly) ------------------------------------------------------------------------
def plotly_js() -> str:
    """plotly.js itself, to be inlined once per page: the page must work offline and alone."""
    from plotly.offline import get_plotlyjs

    return get_plotlyjs()


def figure_html(fig: go.Figure, div_id: str) -> str:
    """A figure as a <div> and the script that draws it; plotly.js is on the page once, not per figure."""
    fig.update_layout(autosize=True, width=None, template="plotly_white", margin={"l": 60, "r": 30, "t": 50, "b": 50})
    if fig.layout.height is None:
        fig.update_layout(height=PLOT_HEIGHT)
    return pio.to_html(
        fig,
        include_plotlyjs=False,
        full_html=False,
        div_id=div_id,
        config=_PLOTLY_CONFIG,
        default_width="100%",
        default_height=f"{fig.layout.height}px",
    )


def _quiet(plot: Any, *args: Any, **kwargs: Any) -> Any:
    """Optuna's plot functions warn about experimental features and empty studies (the page explains
    instead), and its matplotlib ones switch the global style to ggplot: keep that to their own figure."""
    with warnings.catch_warnings(), matplotlib.rc_context():
        warnings.simplefilter("ignore")
        return plot(*args, **kwargs)


def curves_figure(study: optuna.Study, metric: str) -> go.Figure | None:
    """Optuna's intermediate-values plot (one line per trial, value per epoch), labelled with our rank, id
    and status; failed and diverged trials, which Optuna leaves out, are added as dashed red lines."""
    fig = _quiet(optuna.visualization.plot_intermediate_values, study)
    names = labels(study)
    by_name = {f"Trial{t.number}": t for t in study.get_trials(deepcopy=False)}
    for trace in fig.data:
        trial = by_name.get(trace.name)
        if trial is not None:
            rank = trial.user_attrs.get("rank")
            trace.update(name=names[trial.number], legendrank=rank or 1000, line={"width": 3.5 if rank == 1 else 1.6})
    for t in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
        if t.intermediate_values:
            steps = sorted(t.intermediate_values)
            fig.add_trace(
                go.Scatter(
                    x=steps,
                    y=[t.intermediate_values[s] for s in steps],
                    mode="lines+markers",
                    name=names[t.number],
                    line={"dash": "dash", "color": "#d62728"},
                    legendrank=t.user_attrs.get("rank") or 1000,
                )
            )
    if not fig.data:
        return None
    ys = [y for trace in fig.data for y in trace.y]
    fig.update_layout(
        title=f"{metric} per epoch, one line per trial",
        showlegend=True,
        xaxis={"title": "epoch", "dtick": 1 if max(max(tr.x) for tr in fig.data) <= 30 else None},
        yaxis={"title": metric, "type": "log" if _spans_orders(ys) else "linear"},
        legend={"title": "rank, trial (status)"},
    )
    return fig


def _spans_orders(ys: list[float]) -> bool:
    """A log axis when positive values span orders of magnitude (a loss that blew up for one epoch
    would otherwise flatten every other curve into a line at zero)."""
    return bool(ys) and min(ys) > 0 and max(ys) / min(ys) > 100


def importance_figure(scored: optuna.Study, metric: str) -> go.Figure:
    evaluator, _ = evaluator_for(len(scored.get_trials(deepcopy=False)))  # the evaluator analysis/study.importance used
    fig = _quiet(
        optuna.visualization.plot_param_importances,
        scored,
        evaluator=evaluator,
        params=varied_params(scored),
        target_name=metric,
    )
    fig.update_layout(height=max(260, 40 * len(varied_params(scored)) + 140))
    return fig


def parallel_figure(scored: optuna.Study, metric: str) -> go.Figure:
    fig = _quiet(
        optuna.visualization.plot_parallel_coordinate, scored, params=varied_params(scored), target_name=metric
    )
    return fig.update_layout(height=500)  # room for the axis names, which Optuna writes at a slant


def slice_figures(scored: optuna.Study, metric: str) -> list[go.Figure]:
    """Optuna's slice plot, at most SLICE_PER_ROW parameters per figure, in rows of even length (4 is 2 + 2,
    10 is 3 + 3 + 2 + 2): a lone parameter stretched over the whole width reads badly."""
    params = varied_params(scored)
    rows = math.ceil(len(params) / SLICE_PER_ROW)
    figures, start = [], 0
    for row in range(rows):
        size = len(params) // rows + (row < len(params) % rows)
        fig = _quiet(optuna.visualization.plot_slice, scored, params=params[start : start + size], target_name=metric)
        figures.append(fig.update_layout(title=None, height=340))
        start += size
    return figures


def edf_figure(scored: optuna.Study, metric: str) -> go.Figure:
    return _quiet(optuna.visualization.plot_edf, scored, target_name=metric)


# ---- static (matplotlib), for print ------------------------------------------------------------------
def png_bytes(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)  # a report draws a dozen figures: free each one
    return buffer.getvalue()


def _colours(trials: list[TrialSummary]) -> dict[str, Any]:
    """Colour by final rank: rank 1 dark, last rank light (viridis)."""
    n = max(1, len(trials) - 1)
    return {t.trial_id: plt.cm.viridis(0.85 * (t.rank - 1) / n) for t in trials}


def plot_curves(exp: Experiment) -> Figure:
    """The ranking metric (and segm/AP) per epoch for every trial; how each one ended is marked."""
    keys = [exp.metric] + (["segm/AP"] if exp.metric != "segm/AP" else [])
    fig, axes = plt.subplots(1, len(keys), figsize=(6.5 * len(keys), 4.6), squeeze=False)
    colours = _colours(exp.trials)
    for ax, key in zip(axes[0], keys):
        for t in exp.trials:
            points = [
                (r.get("epoch") or r["training_iteration"], r[key])
                for r in t.history
                if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])
            ]
            if not points:
                continue
            xs, ys = zip(*points)
            label = f"#{t.rank} {t.trial_id}" if len(exp.trials) <= _MAX_LEGEND else None
            ax.plot(xs, ys, "-o", ms=3, lw=2.2 if t.rank == 1 else 1.3, color=colours[t.trial_id], label=label)
            if t.status == "stopped":  # cut short (ASHA, time budget, framework): a bar where it ended
                ax.plot(xs[-1], ys[-1], marker="|", ms=16, mew=2.5, color="black")
            elif t.status in ("diverged", "failed"):
                ax.plot(xs[-1], ys[-1], marker="X", ms=11, color="red")
            elif t.status == "running":
                ax.plot(xs[-1], ys[-1], marker=">", ms=9, color=colours[t.trial_id])
        if not ax.lines:
            ax.text(0.5, 0.5, "no epoch reported yet", ha="center", va="center", transform=ax.transAxes)
        if _spans_orders([y for line in ax.lines for y in line.get_ydata()]):
            ax.set_yscale("log")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(key + (" (%)" if key.startswith(("segm/", "bbox/")) else ""))
        ax.set_title(f"{key} per epoch" + (f" (ranked by it, {exp.mode})" if key == exp.metric else ""))
        ax.set_xlim(0.5, max(exp.settings.budget.max_epochs, 1) + 0.5)
        ax.grid(alpha=0.3)
    handles = [
        Line2D([], [], ls="", marker="|", ms=12, mew=2.5, color="black", label="stopped early"),
        Line2D([], [], ls="", marker="X", ms=9, color="red", label="diverged / failed"),
        Line2D([], [], ls="", marker=">", ms=8, color="0.4", label="still running"),
    ]
    axes[0][-1].add_artist(axes[0][-1].legend(handles=handles, fontsize=7, loc="lower right"))
    if axes[0][0].get_legend_handles_labels()[0]:
        axes[0][0].legend(fontsize=7, title="rank, trial", title_fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def plot_progress(exp: Experiment) -> Figure:
    """Best value found so far against the epochs trained so far, all trials together (by wall clock)."""
    epochs = []
    for t in exp.trials:
        for row in t.history:
            value = row.get(exp.metric)
            if isinstance(value, (int, float)) and math.isfinite(value):
                epochs.append((row.get("timestamp") or 0, t.trial_id, row["training_iteration"], float(value)))
    epochs.sort()
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    if epochs:
        pick = max if exp.mode == "max" else min
        best, ys = None, []
        for _, _, _, value in epochs:
            best = value if best is None else pick(best, value)
            ys.append(best)
        xs = range(1, len(epochs) + 1)
        ax.scatter(xs, [e[3] for e in epochs], s=10, color="0.6", label="each epoch")
        ax.step(xs, ys, where="post", lw=2, color="tab:blue", label="best so far")
        ax.legend(fontsize=8)
        if _spans_orders([e[3] for e in epochs]):
            ax.set_yscale("log")
    else:
        ax.text(0.5, 0.5, "no epoch reported yet", ha="center", va="center", transform=ax.transAxes)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("cumulative epochs trained (all trials)")
    ax.set_ylabel(exp.metric)
    ax.set_title(f"best {exp.metric} found ({exp.mode})")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_importance(values: dict[str, float]) -> Figure:
    items = sorted(values.items(), key=lambda kv: kv[1])
    fig, ax = plt.subplots(figsize=(6.5, 0.35 * len(items) + 1.4))
    ax.barh([k for k, _ in items], [v for _, v in items], color="tab:blue")
    ax.set_xlabel("relative importance")
    ax.set_title("hyperparameter importance")
    fig.tight_layout()
    return fig


def plot_parallel(scored: optuna.Study, metric: str) -> Figure:
    params = varied_params(scored)
    ax = _quiet(optuna.visualization.matplotlib.plot_parallel_coordinate, scored, params=params, target_name=metric)
    fig = ax.figure
    fig.set_size_inches(max(7.0, 0.9 * len(params) + 2), 4.8)
    fig.tight_layout()
    return fig


def plot_slice(scored: optuna.Study, metric: str) -> Figure:
    """The metric against each parameter, SLICE_PER_ROW panels a row (Optuna's own puts all in one row)."""
    params = varied_params(scored)
    rows = math.ceil(len(params) / SLICE_PER_ROW)
    fig, axes = plt.subplots(rows, SLICE_PER_ROW, figsize=(11, 3.2 * rows), squeeze=False, sharey=True)
    values = [t.value for t in scored.get_trials(deepcopy=False)]
    for ax, key in zip(axes.flat, params):
        xs = [t.params.get(key) for t in scored.get_trials(deepcopy=False)]
        if not all(isinstance(x, (int, float)) for x in xs):
            xs = [str(x) for x in xs]  # categorical: matplotlib places strings as categories
        ax.scatter(xs, values, c=range(len(values)), cmap="Blues", edgecolors="0.3", s=30)
        if getattr(scored.get_trials(deepcopy=False)[0].distributions.get(key), "log", False):
            ax.set_xscale("log")
        ax.set_xlabel(key)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(params) :]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel(metric)
    fig.suptitle("slice: the metric against each parameter (darker = later trial)", fontsize=10)
    fig.tight_layout()
    return fig


def plot_edf(scored: optuna.Study, metric: str) -> Figure:
    ax = _quiet(optuna.visualization.matplotlib.plot_edf, scored, target_name=metric)
    fig = ax.figure
    fig.set_size_inches(6.5, 4.2)
    fig.tight_layout()
    return fig
