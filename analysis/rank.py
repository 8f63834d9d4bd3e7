"""Rank the trials of an experiment: `python analysis/rank.py EXP_DIR [--metric M] [--mode max|min] ...`.

Prints a ranked table and writes ranking.csv (every column) and ranking.md into --out (default
EXP_DIR/analysis/, a folder Ray never reads). EXP_DIR may also be a folder of several experiments
(filter them with --framework): their trials are ranked together on one metric, which is comparable
across frameworks because every adapter reports through the same COCO evaluator.
Works on finished, running and copied experiments; nothing is written into the experiment itself.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
from pathlib import Path
from typing import Any

from segtune.analysis.compare import COMPARISON_NOTE, markdown_comparison, several_frameworks, text_comparison
from segtune.analysis.confirmed import confirmed_configs, describe, lead_vs_spread
from segtune.analysis.costs import COSTS, TERMINAL_COSTS, format_cost, has_costs, pareto_paths
from segtune.analysis.ranking import TABLE_METRICS, format_value, merge_ranked, table_rows
from segtune.analysis.trials import Experiment, TrialSummary, find_experiments, load_experiment
from segtune.core.errors import ExperimentError, not_writable, run_cli
from segtune.core.record import RunSettings
from segtune.core.score import SCORE_WINDOW
from segtune.trainers.registry import FRAMEWORKS

PROG = "rank.py"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python analysis/rank.py",
        description="Rank the trials of a segtune experiment (or of several experiments in one folder).",
    )
    parser.add_argument(
        "experiment", type=Path, help="experiment directory (<storage>/<name>) or a folder of experiments"
    )
    parser.add_argument(
        "--metric",
        default=None,
        help="rank by this metric (default: the search's metric; several experiments: segm/AP "
        "unless they all searched the same one)",
    )
    parser.add_argument(
        "--mode",
        choices=("max", "min"),
        default=None,
        help="max or min (default: the search's mode for its metric, else min for losses and times)",
    )
    parser.add_argument("--top", type=int, default=None, help="show only the best K trials in the terminal")
    parser.add_argument(
        "--framework",
        choices=FRAMEWORKS,
        default=None,
        help="only experiments of this framework (when EXP_DIR holds several)",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="where ranking.csv and ranking.md go (default: EXP_DIR/analysis/)"
    )
    parser.add_argument(
        "--pareto",
        action="store_true",
        help="show only the trials on the Pareto front of the metric against cost/latency_ms "
        "(the files keep every trial, marked in their pareto column)",
    )
    return parser


def load_all(
    path: Path, framework: str | None, metric: str | None, mode: str | None
) -> tuple[list[Experiment], list[TrialSummary]]:
    """One experiment, or several ranked together on one metric."""
    paths = find_experiments(path, framework)
    if len(paths) > 1 and metric is None:
        metrics = {RunSettings.load(p).objective.metric for p in paths}
        metric = metrics.pop() if len(metrics) == 1 else "segm/AP"  # the one metric every framework reports
    experiments = [load_experiment(p, metric, mode) for p in paths]
    modes = {e.mode for e in experiments}
    if len(modes) > 1:
        raise ExperimentError(f"the experiments disagree on the direction of {experiments[0].metric}; pass --mode")
    if len(experiments) == 1:
        return experiments, experiments[0].trials
    return experiments, merge_ranked(experiments)


def searched_keys(experiments: list[Experiment]) -> list[str]:
    return sorted({k for e in experiments for k in e.searched})


def terminal_table(
    trials: list[TrialSummary],
    metric: str,
    params: list[str],
    several: bool,
    width: int | None = None,
    front: set[Path] | None = None,
) -> str:
    """Fixed columns first (the metric as 'best value @epoch'), then as many searched parameters as fit."""
    width = width or max(130, shutil.get_terminal_size((130, 24)).columns)
    columns: list[tuple[str, Any]] = [("rank", lambda t: str(t.rank))]
    if several:
        columns.append(("experiment", lambda t: t.experiment))
    columns.append(("trial", lambda t: t.trial_id))
    if several_frameworks(trials):
        columns += [("framework", lambda t: t.framework), ("model", lambda t: t.model)]
    if any(t.pareto_rank is not None for t in trials):  # a multi-objective search ranks by its fronts
        columns.append(("front", lambda t: str(t.pareto_rank or "")))
    columns += [
        ("status", lambda t: t.short_status),
        ("epochs", lambda t: str(t.epochs)),
        (
            f"{metric} score",
            lambda t: "" if t.best_value is None else f"{format_value(t.best_value, metric)} @{t.best_epoch}",
        ),
        ("confirms", lambda t: f"{t.confirm_of} #{t.confirm_seed}" if t.confirm_of else ""),
    ]
    columns += [(k, lambda t, k=k: format_value(t.best_metrics.get(k), k)) for k in TABLE_METRICS]
    if has_costs(trials):  # what the model costs, and whether a trial is on the accuracy-latency front
        columns += [(name, lambda t, k=k: format_cost(t.costs.get(k), k)) for k, name in TERMINAL_COSTS]
        columns.append(("pareto", lambda t: "yes" if front and t.path in front else ""))
    cells = [[name for name, _ in columns]] + [[get(t) for _, get in columns] for t in trials]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    for key in params:  # add parameters while the line still fits
        column = [key] + [format_value(t.params.get(key)) for t in trials]
        extra = max(len(c) for c in column)
        if sum(widths) + 2 * len(widths) + extra > width:
            break
        for row, value in zip(cells, column):
            row.append(value)
        widths.append(extra)
    left = {i for i, (name, _) in enumerate(columns) if name in ("experiment", "trial", "framework", "model", "status")}
    lines = [
        "  ".join(c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip()
        for row in cells
    ]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def markdown_table(
    trials: list[TrialSummary], metric: str, params: list[str], several: bool, front: set[Path] | None = None
) -> str:
    costs = [key for key, _, _ in COSTS] if has_costs(trials) else []
    frameworks = several_frameworks(trials)
    header = (
        ["rank"]
        + (["experiment"] if several else [])
        + [
            "trial",
            *(["framework", "model"] if frameworks else []),
            "status",
            "epochs",
            f"{metric} score",
            "best epoch",
            "confirms",
            *TABLE_METRICS,
            *costs,
            *(["pareto"] if costs else []),
            *params,
        ]
    )
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for t in trials:
        row = (
            [str(t.rank)]
            + ([t.experiment] if several else [])
            + [
                f"`{t.trial_id}`",
                *([t.framework, t.model] if frameworks else []),
                t.short_status,
                str(t.epochs),
                format_value(t.best_value, metric),
                str(t.best_epoch or ""),
                f"`{t.confirm_of}` #{t.confirm_seed}" if t.confirm_of else "",
                *(format_value(t.best_metrics.get(k), k) for k in TABLE_METRICS),
                *(format_cost(t.costs.get(k), k) for k in costs),
                *(["yes" if front and t.path in front else ""] if costs else []),
                *(format_value(t.params.get(k)) for k in params),
            ]
        )
        lines.append("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
    return "\n".join(lines)


def write_outputs(out: Path, trials: list[TrialSummary], experiments: list[Experiment]) -> tuple[Path, Path]:
    several = len(experiments) > 1
    metric = experiments[0].metric
    params = searched_keys(experiments)
    front = pareto_paths(trials, metric, experiments[0].mode) if has_costs(trials) else None
    out.mkdir(parents=True, exist_ok=True)
    rows = table_rows(trials, metric, params, with_experiment=several, front=front)
    fieldnames = list(dict.fromkeys(k for row in rows for k in row)) or ["rank", "trial", "status"]
    csv_path, md_path = out / "ranking.csv", out / "ranking.md"
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fieldnames)
        writer.writeheader()
        writer.writerows(rows)
    title = experiments[0].name if not several else f"{len(experiments)} experiments"
    notes = failure_notes(trials)
    mode = experiments[0].mode
    confirmed = confirmed_lines(trials, mode, metric)
    md_path.write_text(
        f"# Ranking: {title}\n\n"
        + (
            f"## Frameworks compared\n\n{COMPARISON_NOTE[0].upper()}{COMPARISON_NOTE[1:]}.\n\n"
            f"{markdown_comparison(trials, metric, mode)}\n\n## Trials\n\n"
            if several_frameworks(trials)
            else ""
        )
        + f"{ranking_sentence(experiments[0])}; the best epoch ends the best window, and the AP columns (percent, "
        f"'-': no ground truth of that size) are at that epoch.\n\n"
        + (
            "## Confirmed configurations\n\n" + "\n".join(f"- {line}" for line in confirmed) + "\n\n"
            if confirmed
            else ""
        )
        + markdown_table(trials, metric, params, several, front)
        + "\n"
        + (
            f"\nCosts (cost/*) as recorded in each trial's best epoch; pareto: on the front of `{metric}` "
            f"against `cost/latency_ms`.\n"
            if front is not None
            else ""
        )
        + ("\n" + "\n".join(f"- {line}" for line in notes) + "\n" if notes else "")
    )
    return csv_path, md_path


def confirmed_lines(trials: list[TrialSummary], mode: str, metric: str) -> list[str]:
    """One line per confirmed configuration (mean +- sd of its new seeds), then the lead against the spread."""
    groups = confirmed_configs(trials, mode)
    lines = []
    for i, group in enumerate(groups, 1):
        original = group.original.best_value if group.original and group.original.best_value is not None else None
        lines.append(
            f"{i}. trial_{group.original_id}: {metric} score {describe(group)}"
            + (f"; best seed trial_{group.best.trial_id}" if group.best else "")
            + (
                f" (its search score {format_value(original, metric)} was selected for being high: not in the mean)"
                if original is not None
                else ""
            )
        )
    verdict = lead_vs_spread(groups, metric)
    return lines + ([verdict] if verdict else [])


def ranking_sentence(exp: Experiment) -> str:
    """How the trials are ordered, in words."""
    score = f"each trial's score: its best ({exp.mode}) mean of `{exp.metric}` over {SCORE_WINDOW} consecutive epochs"
    recorded = exp.settings.objective
    if recorded.objectives and exp.metric == recorded.metric:
        names = ", ".join(f"`{m}` ({d})" for m, d in recorded.objectives)
        return f"Ranked by Pareto rank over {names} (front 1: no trial is better on every objective), then by {score}"
    return f"Ranked by {score}; confirmed configurations first, by the mean of their new seeds"


def failure_notes(trials: list[TrialSummary]) -> list[str]:
    return [f"{t.trial_id}: {t.detail}" for t in trials if t.status in ("failed", "diverged")]


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """The command (`prog`: its name in messages, e.g. 'segtune rank'); returns the exit status."""
    parser = build_parser()
    if prog:
        parser.prog = prog
    args = parser.parse_args(argv)
    return run_cli(prog or PROG, lambda: _rank(args))


def _rank(args: argparse.Namespace) -> int:
    if args.top is not None and args.top <= 0:
        raise ExperimentError(f"--top must be a positive whole number, got {args.top}")
    experiments, trials = load_all(args.experiment, args.framework, args.metric, args.mode)
    several = len(experiments) > 1
    exp = experiments[0]
    if args.pareto and not has_costs(trials):
        raise ExperimentError(
            f"no trial in {args.experiment} recorded cost/latency_ms (run before segtune measured costs); drop --pareto"
        )
    out = args.out or args.experiment.expanduser() / "analysis"
    try:
        csv_path, md_path = write_outputs(out, trials, experiments)
    except OSError as exc:
        raise not_writable(out, exc) from None
    where = exp.path if not several else f"{len(experiments)} experiments in {args.experiment}"
    sentence = ranking_sentence(exp).replace("`", "")
    print(f"{where}: {len(trials)} trials, {sentence[0].lower()}{sentence[1:]}")
    front = pareto_paths(trials, exp.metric, exp.mode)
    shown = [t for t in trials if t.path in front] if args.pareto else trials
    if args.pareto:
        print(f"on the Pareto front of {exp.metric} ({exp.mode}) against cost/latency_ms (min): {len(shown)} trials")
    shown = shown[: args.top] if args.top else shown
    print(terminal_table(shown, exp.metric, searched_keys(experiments), several, front=front))
    for line in failure_notes(trials):
        print(f"  {line}")
    confirmed = confirmed_lines(trials, exp.mode, exp.metric)
    if confirmed:
        print("confirmed configurations (mean +- sd of the new seeds' scores):")
        for line in confirmed:
            print(f"  {line}")
    if several_frameworks(trials):
        print(f"\nframeworks compared ({COMPARISON_NOTE})\n{text_comparison(trials, exp.metric, exp.mode)}\n")
    print(f"wrote {csv_path} and {md_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
