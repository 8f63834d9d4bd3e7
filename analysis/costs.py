"""The cost/* metrics of trials (recorded by runners/trial/cost.py): table columns, the model card's
section, the accuracy-latency front, and choosing trials by latency.

Shared by rank.py (terminal table, ranking.csv, ranking.md), the report and export_best.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segtune.analysis.pareto import LATENCY, accuracy_latency, front_of_trials
from segtune.core.errors import ExperimentError

if TYPE_CHECKING:  # analysis.trials imports analysis.ranking, which imports this module
    from segtune.analysis.trials import Experiment, TrialSummary

# name, unit for people, digits after the point
COSTS: tuple[tuple[str, str, int], ...] = (
    (LATENCY, "latency (ms per image, batch 1)", 1),
    ("cost/fps", "images per second (1000 / latency)", 1),
    ("cost/params_m", "parameters (millions)", 2),
    ("cost/train_mem_mb", "peak training memory (MB)", 0),
    ("cost/infer_mem_mb", "peak inference memory (MB)", 1),
    ("cost/epoch_time_s", "training time per epoch (s, median)", 1),
    ("cost/train_time_s", "training time up to the best epoch (s)", 1),
    ("cost/latency_epoch", "epoch whose weights were timed", 0),
)
COST_KEYS = tuple(key for key, _, _ in COSTS) + ("cost/device",)
TERMINAL_COSTS = ((LATENCY, "latency ms"), ("cost/params_m", "params M"), ("cost/train_mem_mb", "train mem MB"))
_DIGITS = {key: digits for key, _, digits in COSTS}


def has_costs(trials: Sequence[TrialSummary]) -> bool:
    return any(t.costs for t in trials)


def format_cost(value: Any, key: str) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:.{_DIGITS.get(key, 2)}f}"
    return str(value)


def pareto_paths(trials: Sequence[TrialSummary], metric: str, mode: str) -> set[Path]:
    """The trials (by directory) on the front of the ranking metric against latency."""
    return {t.path for t in front_of_trials(trials, accuracy_latency(metric, mode), metric)}


def cost_rows(trial: TrialSummary) -> list[tuple[str, str]]:
    """(what, value) lines for a model card, in COSTS order; empty when nothing was measured."""
    rows = [(label, format_cost(trial.costs[key], key)) for key, label, _ in COSTS if key in trial.costs]
    if rows and "cost/device" in trial.costs:
        rows.append(("measured on", str(trial.costs["cost/device"])))
    return rows


def exportable(exp: Experiment) -> list[TrialSummary]:
    return [t for t in sorted(exp.trials, key=lambda t: t.rank or 0) if t.best_value is not None and t.checkpoint]


def trial_latency(trial: TrialSummary) -> float | None:
    value = trial.costs.get(LATENCY)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _no_costs(exp: Experiment, option: str) -> ExperimentError:
    return ExperimentError(
        f"no trial of {exp.name} recorded {LATENCY} (it ran before segtune measured costs); drop {option}"
    )


def pick_within_latency(exp: Experiment, max_latency_ms: float) -> TrialSummary:
    """The best-ranked exportable trial whose latency is at most `max_latency_ms`."""
    if not max_latency_ms > 0:
        raise ExperimentError(f"--max-latency-ms must be a positive number of milliseconds, got {max_latency_ms:g}")
    timed = [t for t in exportable(exp) if trial_latency(t) is not None]
    if not timed:
        raise _no_costs(exp, "--max-latency-ms")
    within = [t for t in timed if trial_latency(t) <= max_latency_ms]
    if not within:
        fastest = min(timed, key=trial_latency)
        raise ExperimentError(
            f"no trial of {exp.name} has {LATENCY} <= {max_latency_ms:g}; the fastest, trial "
            f"{fastest.trial_id}, takes {trial_latency(fastest):.2f} ms: raise --max-latency-ms"
        )
    return within[0]


def pareto_trials(exp: Experiment) -> list[TrialSummary]:
    """The exportable trials on the front rank.py marks, in ranked order."""
    if not any(trial_latency(t) is not None for t in exp.trials):
        raise _no_costs(exp, "--pareto")
    front = pareto_paths(exp.trials, exp.metric, exp.mode)
    return [t for t in exportable(exp) if t.path in front]


def model_card_costs(trial: TrialSummary) -> str:
    rows = cost_rows(trial)
    if not rows:
        return "Not measured (the experiment ran before segtune measured costs)."
    return (
        "Recorded by the trial at its best epoch (`cost/*` metrics; latency: median of timed single-image "
        "inferences at batch 1, image in memory to full-resolution masks in host memory; a CPU's latency "
        "says nothing about a GPU's).\n\n| cost | value |\n|---|---|\n"
        + "\n".join(f"| {what} | {value} |" for what, value in rows)
    )
