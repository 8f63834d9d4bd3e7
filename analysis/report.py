"""One self-contained HTML report of an experiment: `python analysis/report.py EXP_DIR --out DIR`.

The page (report.html, PNGs embedded as base64, no external assets) shows the ranked table,
learning curves, hyperparameter importance (Optuna's evaluators on an in-memory study rebuilt from
the trials), parallel coordinates and the best value found against the epochs spent. The PNGs are
also written beside the page. Reads finished, running and copied experiments; writes only into --out.
"""
from __future__ import annotations

import argparse
import base64
import html
import io
import math
import sys
import warnings
from pathlib import Path
from typing import Any

_REPO_ROOT = Path(__file__).resolve().parents[1]
if str(_REPO_ROOT) not in sys.path:  # run as a script from a checkout that was not pip-installed
    sys.path.insert(0, str(_REPO_ROOT))

import matplotlib  # noqa: E402

matplotlib.use("Agg")  # files only, never a display
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from analysis.confirmed import confirmation_html, confirmed_configs  # noqa: E402
from analysis.rank import failure_notes  # noqa: E402
from analysis.ranking import TABLE_METRICS, format_value  # noqa: E402
from analysis.trials import Experiment, TrialSummary, load_experiment  # noqa: E402
from core.errors import not_writable, run_cli  # noqa: E402

PROG = "report.py"
MIN_TRIALS_FOR_IMPORTANCE = 4  # with fewer, any importance estimate is noise
_MAX_LEGEND = 12


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python analysis/report.py",
                                     description="Write a self-contained HTML report of a segtune experiment.")
    parser.add_argument("experiment", type=Path, help="experiment directory (<storage>/<name>)")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder for report.html and the PNGs (default: EXP_DIR/analysis/)")
    parser.add_argument("--metric", default=None, help="metric to rank and plot (default: the search's)")
    parser.add_argument("--mode", choices=("max", "min"), default=None, help="max or min (default: the search's)")
    return parser


# ---- plots -------------------------------------------------------------------------------------
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
            points = [(r.get("epoch") or r["training_iteration"], r[key]) for r in t.history
                      if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
            if not points:
                continue
            xs, ys = zip(*points)
            label = f"#{t.rank} {t.trial_id}" if len(exp.trials) <= _MAX_LEGEND else None
            ax.plot(xs, ys, "-o", ms=3, lw=2.2 if t.rank == 1 else 1.3, color=colours[t.trial_id], label=label)
            if t.status == "stopped":  # ASHA's cut: a bar where the trial ended
                ax.plot(xs[-1], ys[-1], marker="|", ms=16, mew=2.5, color="black")
            elif t.status in ("diverged", "failed"):
                ax.plot(xs[-1], ys[-1], marker="X", ms=11, color="red")
            elif t.status == "running":
                ax.plot(xs[-1], ys[-1], marker=">", ms=9, color=colours[t.trial_id])
        if not ax.lines:
            ax.text(0.5, 0.5, "no epoch reported yet", ha="center", va="center", transform=ax.transAxes)
        _auto_log_scale(ax)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(key + (" (%)" if key.startswith(("segm/", "bbox/")) else ""))
        ax.set_title(f"{key} per epoch" + (f" (ranked by it, {exp.mode})" if key == exp.metric else ""))
        ax.set_xlim(0.5, max(exp.settings.max_epochs, 1) + 0.5)
        ax.grid(alpha=0.3)
    _marker_legend(axes[0][-1], exp)
    if axes[0][0].get_legend_handles_labels()[0]:
        axes[0][0].legend(fontsize=7, title="rank, trial", title_fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def _auto_log_scale(ax) -> None:
    """A log axis when positive values span orders of magnitude (a loss that blew up for one epoch
    would otherwise flatten every other curve into a line at zero)."""
    ys = [y for line in ax.lines for y in line.get_ydata()]
    ys += [y for coll in ax.collections for y in coll.get_offsets()[:, 1]]
    if ys and min(ys) > 0 and max(ys) / min(ys) > 100:
        ax.set_yscale("log")


def _marker_legend(ax, exp: Experiment) -> None:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], ls="", marker="|", ms=12, mew=2.5, color="black", label="stopped early by ASHA"),
               Line2D([], [], ls="", marker="X", ms=9, color="red", label="diverged / failed"),
               Line2D([], [], ls="", marker=">", ms=8, color="0.4", label="still running")]
    ax.add_artist(ax.legend(handles=handles, fontsize=7, loc="lower right"))


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
        best, xs, ys = None, [], []
        for i, (_, _, _, value) in enumerate(epochs, 1):
            best = value if best is None else pick(best, value)
            xs.append(i)
            ys.append(best)
        ax.scatter(range(1, len(epochs) + 1), [e[3] for e in epochs], s=10, color="0.6", label="each epoch")
        ax.step(xs, ys, where="post", lw=2, color="tab:blue", label="best so far")
        ax.legend(fontsize=8)
        _auto_log_scale(ax)
    else:
        ax.text(0.5, 0.5, "no epoch reported yet", ha="center", va="center", transform=ax.transAxes)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("cumulative epochs trained (all trials)")
    ax.set_ylabel(exp.metric)
    ax.set_title(f"best {exp.metric} found ({exp.mode})")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


# ---- hyperparameter importance ------------------------------------------------------------------
def build_study(exp: Experiment):
    """An in-memory Optuna study with one COMPLETE trial per search trial that has a value: its score,
    the value the ranking uses (an ASHA-stopped trial enters with what it reached before the cut).
    Confirmation trials re-measure a search trial's point with other seeds: they are left out."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    scored = [t for t in exp.trials if t.best_value is not None and t.status != "failed" and not t.confirm_of]
    distributions = {k: d for k, d in _distributions(exp, scored).items() if not d.single()}
    study = optuna.create_study(direction="maximize" if exp.mode == "max" else "minimize")
    from search_spaces.space import freeze

    study.add_trials([
        optuna.trial.create_trial(
            value=t.best_value, params={k: freeze(t.params[k]) for k in distributions},
            distributions=distributions,
            intermediate_values={int(r.get("epoch") or r["training_iteration"]): float(r[exp.metric])
                                 for r in t.history if isinstance(r.get(exp.metric), (int, float))
                                 and math.isfinite(r[exp.metric])},
            user_attrs={"trial_id": t.trial_id, "status": t.status},
        )
        for t in scored
    ])
    return study, distributions


def _distributions(exp: Experiment, trials: list[TrialSummary]) -> dict[str, Any]:
    """The search space's distributions; for keys it does not cover, ones fitted to the values seen."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    from search_spaces.space import freeze

    result = {}
    for key in exp.searched:
        values = [freeze(t.params[key]) for t in trials if key in t.params]
        if len(values) < len(trials) or not values:
            continue  # a key some trials lack cannot enter one study
        if key in exp.distributions:
            result[key] = exp.distributions[key]
        elif all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            result[key] = IntDistribution(min(values), max(values))
        elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            low, high = float(min(values)), float(max(values))
            result[key] = FloatDistribution(low, high, log=low > 0 and high / low >= 100)
        else:
            result[key] = CategoricalDistribution(sorted(set(values), key=str))
    return result


def importance(exp: Experiment) -> tuple[dict[str, float] | None, str, Any]:
    """(importances, explanation, study). fANOVA when scikit-learn is installed, else PED-ANOVA, which
    Optuna implements without extra packages."""
    if not exp.searched:
        return None, "no searched hyperparameters (a --config run): nothing to rank by importance", None
    study, distributions = build_study(exp)
    n = len(study.trials)
    if n < MIN_TRIALS_FOR_IMPORTANCE:
        return None, (f"not enough trials for importance: {n} with a value, at least "
                      f"{MIN_TRIALS_FOR_IMPORTANCE} needed"), study
    if not distributions:
        return None, "every searched hyperparameter has one value in these trials: nothing to compare", study
    if len({t.value for t in study.trials}) == 1:
        return None, f"every trial has the same {exp.metric} ({study.trials[0].value:g}): nothing to attribute", study
    import optuna
    from optuna.importance import PedAnovaImportanceEvaluator, get_param_importances

    try:
        import sklearn  # noqa: F401

        evaluator, name = optuna.importance.FanovaImportanceEvaluator(seed=0), "fANOVA (scikit-learn random forest)"
    except ImportError:
        # PED-ANOVA compares the top quantile of trials with all of them; keep >= 2 trials in the top.
        quantile = min(0.5, max(0.1, 2.0 / n))
        evaluator = PedAnovaImportanceEvaluator(target_quantile=quantile)
        name = (f"PED-ANOVA (Optuna's PedAnovaImportanceEvaluator, target quantile {quantile:.2f}; "
                f"scikit-learn is not installed, so fANOVA is unavailable)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            values = get_param_importances(study, evaluator=evaluator)
    except Exception as exc:  # e.g. all values equal: nothing to attribute
        return None, f"importance could not be computed ({type(exc).__name__}: {exc})", study
    return values, (f"{name}, over {n} trials, each with its best {exp.metric}; ASHA-stopped trials "
                    f"enter with the value they reached before being stopped"), study


def plot_importance(values: dict[str, float]) -> Figure:
    items = sorted(values.items(), key=lambda kv: kv[1])
    fig, ax = plt.subplots(figsize=(6.5, 0.35 * len(items) + 1.4))
    ax.barh([k for k, _ in items], [v for _, v in items], color="tab:blue")
    ax.set_xlabel("relative importance")
    ax.set_title("hyperparameter importance")
    fig.tight_layout()
    return fig


def plot_parallel(study) -> Figure | None:
    import optuna

    if study is None or len(study.trials) < 2 or not study.trials[0].params:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "experimental" warning
        ax = optuna.visualization.matplotlib.plot_parallel_coordinate(study)
    fig = ax.figure
    fig.set_size_inches(max(7.0, 0.9 * len(study.trials[0].params) + 2), 4.8)
    fig.tight_layout()
    return fig


# ---- the page ----------------------------------------------------------------------------------
def _save(fig: Figure, path: Path) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    path.write_bytes(buffer.getvalue())
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _image(b64: str, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{b64}">'


def _table(exp: Experiment) -> str:
    head = ["rank", "trial", "status", "epochs", f"{exp.metric} score", "best epoch", *TABLE_METRICS,
            *exp.searched, "wall time (s)"]
    rows = []
    for t in exp.trials:
        cells = [t.rank, t.trial_id, t.short_status, t.epochs, format_value(t.best_value, exp.metric),
                 t.best_epoch or "", *(format_value(t.best_metrics.get(k), k) for k in TABLE_METRICS),
                 *(format_value(t.params.get(k)) for k in exp.searched),
                 "" if t.wall_time_s is None else f"{t.wall_time_s:.0f}"]
        rows.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    return ("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"
            + "".join(rows) + "</table>")


PNG_NAMES = ("curves.png", "importance.png", "parallel.png", "progress.png")


def build_report(exp: Experiment, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    for name in PNG_NAMES:  # a plot this run cannot draw must not leave an earlier run's behind
        (out / name).unlink(missing_ok=True)
    s = exp.settings
    sections = [f"<h2>Ranking</h2><p>By each trial's score: its best ({exp.mode}) mean of "
                f"<code>{html.escape(exp.metric)}</code> over 3 consecutive epochs, confirmed configurations first; "
                f"COCO AP in percent at the epoch ending that window ('-': no ground truth of that size).</p>"
                f"{_table(exp)}"]
    sections.append(confirmation_html(confirmed_configs(exp.trials, exp.mode), exp.metric))
    notes = failure_notes(exp.trials)
    if notes:
        sections.append("<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>")
    sections.append("<h2>Learning curves</h2><p>Colour: final rank (dark = best). A black bar marks where "
                    "ASHA stopped a trial; a red cross, a trial that diverged or failed.</p>"
                    + _image(_save(plot_curves(exp), out / "curves.png"), "learning curves"))
    values, explanation, study = importance(exp)
    section = f"<h2>Hyperparameter importance</h2><p>{html.escape(explanation)}</p>"
    if values:
        section += _image(_save(plot_importance(values), out / "importance.png"), "importance")
        section += "<table><tr><th>parameter</th><th>importance</th></tr>" + "".join(
            f"<tr><td>{html.escape(k)}</td><td>{v:.3f}</td></tr>" for k, v in values.items()) + "</table>"
    sections.append(section)
    parallel = plot_parallel(study)
    sections.append("<h2>Parallel coordinates</h2>" + (
        "<p>One line per trial (its best value), coloured by the objective.</p>"
        + _image(_save(parallel, out / "parallel.png"), "parallel coordinates") if parallel is not None
        else "<p>Not enough trials with searched parameters to draw (needs 2).</p>"))
    sections.append("<h2>Search progress</h2><p>Best value found against the epochs spent by all trials "
                    "together, in the order they were trained.</p>"
                    + _image(_save(plot_progress(exp), out / "progress.png"), "search progress"))
    counts = {}
    for t in exp.trials:
        counts[t.status] = counts.get(t.status, 0) + 1
    summary = (f"{s.framework}{f' ({s.backend})' if s.backend else ''}, model {s.model}"
               f"{f', weights {s.weights}' if s.weights else ', from scratch'}; data {s.dataset.name} "
               f"(content hash {s.dataset.content_hash[:16]}), {s.dataset.num_train_images} train / "
               f"{s.dataset.num_val_images} val images; up to {s.max_epochs} epochs; seed {s.seed}; "
               f"{len(exp.trials)} trials: " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>segtune report: {html.escape(exp.name)}</title>
<style>body{{font-family:sans-serif;max-width:1200px;margin:2em auto;color:#222}}
table{{border-collapse:collapse;font-size:12px;margin:0.5em 0}}td,th{{border:1px solid #ccc;padding:2px 6px;
text-align:right}}th{{background:#f0f0f0}}img{{max-width:100%;display:block;margin:0.5em 0}}</style></head>
<body><h1>segtune report: {html.escape(exp.name)}</h1><p>{html.escape(summary)}</p>
<p><code>{html.escape(str(exp.path))}</code></p>
{''.join(sections)}
</body></html>
"""
    target = out / "report.html"
    target.write_text(page)
    return target


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_cli(PROG, lambda: _report(args))


def _report(args: argparse.Namespace) -> int:
    exp = load_experiment(args.experiment, args.metric, args.mode)
    out = args.out or args.experiment.expanduser() / "analysis"
    try:
        target = build_report(exp, out)
    except OSError as exc:
        raise not_writable(out, exc) from None
    print(f"wrote {target} ({len(exp.trials)} trials)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
