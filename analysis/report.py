"""One self-contained HTML report of an experiment: `python analysis/report.py EXP_DIR --out DIR`.

report.html is one file that works offline: plotly.js is inlined once, the interactive plots are
Optuna's own plotly figures (learning curves, importance, parallel coordinates, slice, EDF) of a study
rebuilt from the trials (analysis/study.py), and static PNGs of the same views (base64) replace them in
print and PDF, or when scripts are off. The PNGs are also written beside the page. Tables fit the
window: fixed columns in the ranking, the searched parameters in their own table, and a table wider
than the page scrolls inside its box. Reads finished, running and copied experiments; writes only into --out.
"""

from __future__ import annotations

import argparse
import base64
import html
import sys
from pathlib import Path

import optuna
from matplotlib.figure import Figure

from segtune.analysis import report_plots as plots
from segtune.analysis.compare import COMPARISON_NOTE, html_comparison, several_frameworks
from segtune.analysis.confirmed import confirmation_html, confirmed_configs
from segtune.analysis.rank import failure_notes, ranking_sentence
from segtune.analysis.ranking import TABLE_METRICS, format_value
from segtune.analysis.report_pareto import PNG_NAME as PARETO_PNG
from segtune.analysis.report_pareto import pareto_section
from segtune.analysis.study import importance, scored_study, study_from_experiment, varied_params
from segtune.analysis.trials import Experiment, load_experiment
from segtune.core.choice import describe_frameworks
from segtune.core.errors import not_writable, run_cli

PROG = "report.py"
PNG_NAMES = ("curves.png", "importance.png", "parallel.png", "slice.png", "edf.png", "progress.png", PARETO_PNG)
# In the order the header counts them: healthy first.
_STATUS_WORDS = {
    "finished": "finished",
    "stopped": "stopped early",
    "running": "running",
    "pending": "pending",
    "paused": "paused",
    "diverged": "diverged",
    "failed": "failed",
}
CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#222;margin:0 auto;
  max-width:1240px;padding:0 24px 48px;line-height:1.45}
h1{margin:.8em 0 .2em}h2{margin:1.6em 0 .4em;padding-top:.4em;border-top:1px solid #ddd}
.sub{color:#555;margin:.2em 0}code{background:#f3f3f3;padding:0 .25em;border-radius:3px}
nav{margin:.8em 0;font-size:14px}nav a{margin-right:1em;color:#1f5fa8;text-decoration:none}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:1em 0}
.card{border:1px solid #ddd;border-radius:8px;padding:8px 14px;background:#fafbfc;flex:1 1 180px;max-width:320px}
.card b{display:block;font-size:12px;color:#666;font-weight:600;text-transform:uppercase;letter-spacing:.03em}
.card span.big{font-size:20px;font-weight:600}
.scroll{overflow-x:auto;width:fit-content;max-width:100%;border:1px solid #ddd;border-radius:6px;margin:.5em 0}
table{border-collapse:collapse;font-size:13px}
th,td{padding:4px 10px;border-bottom:1px solid #eee;text-align:right;white-space:nowrap}
th{background:#f3f5f7;white-space:normal;vertical-align:bottom;min-width:3em}
td.l,th.l{text-align:left}tr:hover td{background:#f6f9fe}
.pin{position:sticky;left:0;background:#fff;border-right:1px solid #ddd}th.pin{background:#f3f5f7}
.badge{display:inline-block;border-radius:10px;padding:0 8px;font-size:12px;color:#fff}
.s-finished{background:#2e7d32}.s-stopped{background:#1565c0}.s-diverged,.s-failed{background:#c62828}
.s-running{background:#ef6c00}.s-pending,.s-paused{background:#757575}
.plot{width:100%;margin:.5em 0}img{max-width:100%;display:block;margin:.5em auto}
details{margin:.5em 0}summary{cursor:pointer;color:#1f5fa8}
.note{color:#c62828;margin:.2em 0}.print-only{display:none}
@media print{.screen-only,nav{display:none}.print-only{display:block}.scroll{overflow:visible;border:none}
  body{max-width:none;padding:0}img{break-inside:avoid}.pin{position:static}
  table{font-size:9px}th,td{white-space:normal;padding:2px 4px}}
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python analysis/report.py", description="Write a self-contained HTML report of a segtune experiment."
    )
    parser.add_argument("experiment", type=Path, help="experiment directory (<storage>/<name>)")
    parser.add_argument(
        "--out", type=Path, default=None, help="output folder for report.html and the PNGs (default: EXP_DIR/analysis/)"
    )
    parser.add_argument("--metric", default=None, help="metric to rank and plot (default: the search's)")
    parser.add_argument("--mode", choices=("max", "min"), default=None, help="max or min (default: the search's)")
    return parser


# ---- pieces of the page ------------------------------------------------------------------------
def _esc(value: object) -> str:
    return html.escape(str(value))


def _breakable(name: str) -> str:
    """A column name that may wrap after '.' and '/': MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE would otherwise be
    one word as wide as three columns."""
    text = _esc(name)
    for sep in "./":
        text = text.replace(sep, sep + "<wbr>")
    return text


def _badge(status: str, text: str | None = None) -> str:
    return f'<span class="badge s-{_esc(status)}">{_esc(text or status)}</span>'


def _table(
    head: list[str], rows: list[list[str]], left: frozenset[int] | set[int] = frozenset(), pin: int | None = None
) -> str:
    """An HTML table (cells already escaped) in a box that scrolls sideways when wider than the page;
    column `pin` (the trial id) stays in view while scrolling."""

    def cls(i: int) -> str:
        names = (["l"] if i in left else []) + (["pin"] if i == pin else [])
        return f' class="{" ".join(names)}"' if names else ""

    header = "".join(f"<th{cls(i)}>{h}</th>" for i, h in enumerate(head))
    body = "".join("<tr>" + "".join(f"<td{cls(i)}>{c}</td>" for i, c in enumerate(row)) + "</tr>" for row in rows)
    return f'<div class="scroll"><table><thead><tr>{header}</tr></thead><tbody>{body}</tbody></table></div>'


def ranking_table(exp: Experiment) -> str:
    confirms = any(t.confirm_of for t in exp.trials)
    head = [
        "rank",
        "trial",
        "status",
        "epochs",
        f"{_breakable(exp.metric)} score",
        "best epoch",
        *(["confirms"] if confirms else []),
        *map(_breakable, TABLE_METRICS),
        "wall time (s)",
    ]
    rows = [
        [
            str(t.rank),
            f"<code>{_esc(t.trial_id)}</code>",
            _badge(t.status, t.short_status),
            str(t.epochs),
            _esc(format_value(t.best_value, exp.metric)),
            _esc(t.best_epoch or ""),
            *([f"<code>{_esc(t.confirm_of)}</code> #{t.confirm_seed}" if t.confirm_of else ""] if confirms else []),
            *(_esc(format_value(t.best_metrics.get(k), k)) for k in TABLE_METRICS),
            "" if t.wall_time_s is None else f"{t.wall_time_s:.0f}",
        ]
        for t in exp.trials
    ]
    if any(t.pareto_rank is not None for t in exp.trials):  # a multi-objective search: its fronts
        head.insert(2, "front")
        for row, t in zip(rows, exp.trials):
            row.insert(2, _esc(t.pareto_rank or ""))
    if several_frameworks(exp.trials):
        head.insert(2, "framework (model)")
        for row, t in zip(rows, exp.trials):
            row.insert(2, f"{_esc(t.framework)} <small>({_esc(t.model)})</small>")
    return _table(head, rows, left={1, 2}, pin=1)


def params_table(exp: Experiment) -> str:
    head = ["rank", "trial", f"{_esc(exp.metric)}<br>score", *map(_breakable, exp.searched)]
    rows = [
        [
            str(t.rank),
            f"<code>{_esc(t.trial_id)}</code>",
            _esc(format_value(t.best_value, exp.metric)),
            *(_esc(format_value(t.params.get(k))) for k in exp.searched),
        ]
        for t in exp.trials
    ]
    return _table(head, rows, left={1}, pin=1)


def _png(fig: Figure, path: Path, alt: str) -> str:
    """Write the PNG beside the page and return it as an <img> (base64: the page stays one file)."""
    data = plots.png_bytes(fig)
    path.write_bytes(data)
    return f'<img alt="{_esc(alt)}" src="data:image/png;base64,{base64.b64encode(data).decode("ascii")}">'


def _view(name: str, figures: list, static: str) -> str:
    """Interactive figures on screen, the static image in print (and without scripts)."""
    divs = "".join(
        f'<div class="plot">{plots.figure_html(fig, f"plot-{name}-{i}")}</div>' for i, fig in enumerate(figures)
    )
    return f'<div class="screen-only">{divs}</div><div class="print-only">{static}</div>'


def _section(anchor: str, title: str, body: str) -> tuple[str, str, str]:
    return anchor, title, f'<section id="{anchor}"><h2>{_esc(title)}</h2>{body}</section>'


def header(exp: Experiment) -> str:
    s, trials = exp.settings, exp.trials
    counts: dict[str, int] = {}
    for t in trials:
        counts[t.status] = counts.get(t.status, 0) + 1
    best = next((t for t in trials if t.best_value is not None), None)
    best_text = (
        f'<span class="big"><code>{_esc(best.trial_id)}</code></span><br>{_esc(exp.metric)} '
        f"score {_esc(format_value(best.best_value, exp.metric))}, window ending at epoch {best.best_epoch}"
        if best
        else '<span class="big">none yet</span>'
    )
    epochs, budget = sum(t.epochs for t in trials), len(trials) * max(s.budget.max_epochs, 1)
    cards = [
        (
            "metric",
            f'<span class="big">{_esc(exp.metric)}</span><br>'
            f"{'higher' if exp.mode == 'max' else 'lower'} is better ({exp.mode})",
        ),
        ("best trial", best_text),
        (
            "trials",
            f'<span class="big">{len(trials)}</span><br>'
            + " ".join(_badge(k, f"{counts[k]} {word}") for k, word in _STATUS_WORDS.items() if k in counts),
        ),
        (
            "epochs trained",
            f'<span class="big">{epochs}</span> of {budget} possible<br>'
            + (
                "search still running"
                if any(t.status in ("running", "pending", "paused") for t in trials)
                else f"{100 * (1 - epochs / budget):.0f} % saved by early stopping"
            ),
        ),
    ]
    weights = None if s.is_multi else s.sole_framework.weights
    summary = (
        f"{describe_frameworks(s)}{f', weights {weights}' if weights else ''}"
        f"{'' if weights or s.is_multi else ', from scratch'}; data {s.data.name} "
        f"(content hash {s.data.content_hash[:16]}), {s.data.num_train_images} train / "
        f"{s.data.num_val_images} val images; up to {s.budget.max_epochs} epochs per trial; seed {s.seed}"
    )
    return (
        f'<header><h1>segtune report: {_esc(exp.name)}</h1><p class="sub">{_esc(summary)}</p>'
        f'<p class="sub"><code>{_esc(exp.path)}</code></p><div class="cards">'
        + "".join(f'<div class="card"><b>{title}</b>{body}</div>' for title, body in cards)
        + "</div></header>"
    )


def _tables(exp: Experiment) -> list[tuple[str, str, str]]:
    ranking = (
        f"<p>{_esc(ranking_sentence(exp).replace('`', ''))}; COCO AP in percent at the epoch ending the "
        f"best window ('-': no ground truth of that size).</p>{ranking_table(exp)}"
        + confirmation_html(confirmed_configs(exp.trials, exp.mode), exp.metric)
        + "".join(f'<p class="note">{_esc(n)}</p>' for n in failure_notes(exp.trials))
    )
    params = (
        f"<p>What the search chose for each trial, in ranking order.</p>{params_table(exp)}"
        if exp.searched
        else "<p>No searched hyperparameters (a --config run).</p>"
    )
    if exp.fixed:
        fixed = ", ".join(f"{_esc(k)} = {_esc(format_value(v))}" for k, v in sorted(exp.fixed.items()))
        params += (
            f"<details><summary>Fixed in every trial ({len(exp.fixed)} settings)</summary><p>{fixed}</p></details>"
        )
    return [_section("ranking", "Ranking", ranking), _section("params", "Hyperparameters", params)]


def _curves(exp: Experiment, study: optuna.Study, out: Path) -> tuple[str, str, str]:
    also = "segm/AP too, " if exp.metric != "segm/AP" else ""
    text = (
        f"<p><code>{_esc(exp.metric)}</code> after every epoch. Hover a line for its trial; click legend entries "
        "to hide or show trials, double-click one to see it alone. Dashed red: failed or diverged. Printed, "
        f"the page shows {also}a black bar where a trial was stopped early (ASHA, the time budget or the "
        "framework: the ranking says which) and a red cross where one failed.</p>"
    )
    figure = plots.curves_figure(study, exp.metric)
    return _section(
        "curves",
        "Learning curves",
        text
        + _view(
            "curves", [figure] if figure else [], _png(plots.plot_curves(exp), out / "curves.png", "learning curves")
        ),
    )


def _importance(exp: Experiment, scored: optuna.Study, out: Path) -> tuple[str, str, str]:
    values, explanation = importance(scored, exp.metric)
    body = f"<p>{_esc(explanation)}</p>"
    if values:
        body += _view(
            "importance",
            [plots.importance_figure(scored, exp.metric)],
            _png(plots.plot_importance(values), out / "importance.png", "importance"),
        )
        body += _table(["parameter", "importance"], [[_esc(k), f"{v:.3f}"] for k, v in values.items()], left={0})
    return _section("importance", "Hyperparameter importance", body)


def _search_space(exp: Experiment, scored: optuna.Study, out: Path) -> list[tuple[str, str, str]]:
    """Parallel coordinates and slice: both need two scored trials whose parameters differ."""
    m = _esc(exp.metric)
    if len(scored.get_trials(deepcopy=False)) < 2 or not varied_params(scored):
        why = (
            "<p>Not enough scored trials with searched parameters to draw (needs 2 finished or "
            "ASHA-stopped trials whose parameters differ).</p>"
        )
        return [_section("parallel", "Parallel coordinates", why), _section("slice", "Slice", why)]
    parallel = (
        f"<p>One line per trial through its parameters, coloured by its best <code>{m}</code>. Drag along "
        "an axis to select a range.</p>"
        + _view(
            "parallel",
            [plots.parallel_figure(scored, exp.metric)],
            _png(plots.plot_parallel(scored, exp.metric), out / "parallel.png", "parallel coordinates"),
        )
    )
    slices = f"<p>Each trial's best <code>{m}</code> against each parameter.</p>" + _view(
        "slice",
        plots.slice_figures(scored, exp.metric),
        _png(plots.plot_slice(scored, exp.metric), out / "slice.png", "slice"),
    )
    return [_section("parallel", "Parallel coordinates", parallel), _section("slice", "Slice", slices)]


def _results(exp: Experiment, scored: optuna.Study, out: Path) -> list[tuple[str, str, str]]:
    """The distribution of the trials' results, and the best one against the epochs spent."""
    m = _esc(exp.metric)
    edf = (
        f"<p>The fraction of trials whose best <code>{m}</code> is at most a given value.</p>"
        + _view(
            "edf",
            [plots.edf_figure(scored, exp.metric)],
            _png(plots.plot_edf(scored, exp.metric), out / "edf.png", "EDF"),
        )
        if scored.get_trials(deepcopy=False)
        else "<p>No finished or ASHA-stopped trial yet.</p>"
    )
    progress = (
        "<p>Best value found against the epochs spent by all trials together, in the order they were "
        "trained.</p>" + _png(plots.plot_progress(exp), out / "progress.png", "search progress")
    )
    return [_section("edf", "Distribution of results (EDF)", edf), _section("progress", "Search progress", progress)]


def sections(exp: Experiment, study: optuna.Study, out: Path) -> list[tuple[str, str, str]]:
    """(anchor, title, html) of every section; each plot's PNG is written into `out` on the way. The learning
    curves read the whole study, the other plots its scored trials (analysis/study.py: scored_study)."""
    scored = scored_study(study)
    pareto = _section("pareto", "Accuracy against latency", pareto_section(exp.trials, exp.metric, exp.mode, out))
    compared = (
        [
            _section(
                "frameworks",
                "Frameworks compared",
                f"<p>Measured in this experiment, {_esc(COMPARISON_NOTE)}."
                f"</p>{html_comparison(exp.trials, exp.metric, exp.mode)}",
            )
        ]
        if several_frameworks(exp.trials)
        else []
    )
    return [
        *compared,
        *_tables(exp),
        _curves(exp, study, out),
        _importance(exp, scored, out),
        *_search_space(exp, scored, out),
        *_results(exp, scored, out),
        pareto,
    ]


def build_report(exp: Experiment, out: Path, study: optuna.Study | None = None) -> Path:
    """Write report.html (and the PNGs) into `out`. `study`: an Optuna study of this search to plot instead
    of the one rebuilt from the trials."""
    out.mkdir(parents=True, exist_ok=True)
    for name in PNG_NAMES:  # a plot this run cannot draw must not leave an earlier run's behind
        (out / name).unlink(missing_ok=True)
    parts = sections(exp, study if study is not None else study_from_experiment(exp), out)
    nav = "".join(f'<a href="#{anchor}">{_esc(title)}</a>' for anchor, title, _ in parts)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>segtune report: {_esc(exp.name)}</title><style>{CSS}</style>
<noscript><style>.screen-only{{display:none}}.print-only{{display:block}}</style></noscript>
<script>{plots.plotly_js()}</script></head>
<body>{header(exp)}<nav>{nav}</nav>
{"".join(body for _, _, body in parts)}
</body></html>
"""
    target = out / "report.html"
    target.write_text(page)
    return target


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """The command (`prog`: its name in messages, e.g. 'segtune rank'); returns the exit status."""
    parser = build_parser()
    if prog:
        parser.prog = prog
    args = parser.parse_args(argv)
    return run_cli(prog or PROG, lambda: _report(args))


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
