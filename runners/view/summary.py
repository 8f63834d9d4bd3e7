"""The closing summary of a search: counts, the best trial and the commands to look further.

The best trial is chosen by `analysis.ranking.best_trial` on the experiment as the analysis scripts
read it, so the summary, `rank.py`, `report.py` and `export_best.py` always name the same trial: the
best seed of the best confirmed configuration, or, without confirmation, the trial with the best score.
"""

from __future__ import annotations

import collections
from pathlib import Path

from segtune.core.record import (
    DIVERGED_KEY,
    END_ASHA,
    END_DIVERGED,
    END_EPOCH_BUDGET,
    END_FAILED,
    END_FINISHED,
    END_FRAMEWORK,
    END_TIME_BUDGET,
    FAILURE_KEY,
    RunSettings,
)
from segtune.core.score import SCORE_WINDOW
from segtune.runners.cluster.connect import last_line

SUMMARY_METRICS = ("segm/AP", "segm/AP50", "bbox/AP", "bbox/AP50")


def summarize(results, settings: RunSettings, experiment_dir: Path) -> tuple[int, str]:
    """The closing text and the exit status (1 when every trial failed, or the time budget ran out
    before any trial reported). `results` is Ray's ResultGrid."""
    from segtune.analysis.confirmed import confirmed_configs, describe, lead_vs_spread
    from segtune.analysis.ranking import best_trial
    from segtune.analysis.trials import load_experiment

    failures: list[str] = []
    for result in results:
        metrics = result.metrics or {}
        if result.error is not None:
            failures.append(last_line(str(result.error)))
        elif metrics.get(DIVERGED_KEY):
            failures.append(str(metrics.get(FAILURE_KEY, "diverged")))
    total = len(results)
    time_budget, metric = settings.budget.time_budget, settings.objective.metric
    if time_budget and not failures and not any((r.metrics or {}).get("training_iteration") for r in results):
        return 1, (
            f"the time budget ({time_budget:g} s) ran out before any trial reported an epoch; "
            f"continue with --resume --name {experiment_dir.name} --time-budget SECONDS (longer)"
        )
    if total == 0 or len(failures) == total:
        common = collections.Counter(_reason_kind(f) for f in failures).most_common(1)
        reason = common[0][0] if common else "no trial ran"
        return 1, f"every trial failed ({total} of {total}); most common reason: {reason}"
    experiment = load_experiment(experiment_dir)
    best = best_trial(experiment.trials)
    confirming = [t for t in experiment.trials if t.confirm_of]
    search = [t for t in experiment.trials if not t.confirm_of]
    lines = [f"{len(search)} {'search ' if confirming else ''}trials: {_count_endings(search)}"]
    if confirming:
        lines.append(f"{len(confirming)} confirmation trials: {_count_endings(confirming)}")
    groups = [g for g in confirmed_configs(experiment.trials, settings.objective.mode) if g.mean is not None]
    if groups:
        lines.append(
            f"best configuration: trial_{groups[0].original_id}, confirmed with new seeds: score "
            f"{describe(groups[0])} (its search score is not counted: it was selected for being high)"
        )
        lines.append(f"  {lead_vs_spread(groups, metric)}")
    if best is None:
        lines.append("no trial reported a value of " + metric)
    else:
        first = max(1, best.best_epoch - SCORE_WINDOW + 1) if best.best_epoch else None
        metrics = ", ".join(f"{k}={best.best_metrics[k]:.2f}" for k in SUMMARY_METRICS if k in best.best_metrics)
        if settings.objective.objectives:
            front = [t.trial_id for t in experiment.trials if t.pareto_rank == 1]
            names = ", ".join(f"{m} ({d})" for m, d in settings.objective.objectives)
            lines.append(
                f"Pareto front of {names}: {len(front)} trials ({', '.join(front)}); ranked by Pareto rank, "
                f"then {metric}"
            )
        seed = f" (seed #{best.confirm_seed} of trial_{best.confirm_of}'s configuration)" if best.confirm_of else ""
        chosen = f" ({best.framework}, {best.model})" if settings.is_multi else ""
        lines += [
            f"best trial: trial_{best.trial_id}{chosen}{seed}",
            f"  score {best.best_value:.3f}: mean {metric} of epochs {first}-{best.best_epoch}",
            f"  at epoch {best.best_epoch}: {metrics}",
            f"  config: {best.params}",
            f"  checkpoint: {best.checkpoint or '(none)'}",
        ]
    lines += [
        f"watch curves:  tensorboard --logdir {experiment_dir}",
        f"rank trials:   segtune rank {experiment_dir}" + ("  (compares the frameworks)" if settings.is_multi else ""),
        f"export best:   segtune export {experiment_dir} --out {experiment_dir}/best",
    ]
    return 0, "\n".join(lines)


def _count_endings(trials) -> str:
    """e.g. "2 finished, 1 stopped by ASHA, 1 failed", from the end reasons the driver recorded."""
    words = {
        END_FINISHED: "finished",
        END_ASHA: "stopped by ASHA",
        END_TIME_BUDGET: "stopped by the time budget",
        END_EPOCH_BUDGET: "stopped by the epoch budget",
        END_FRAMEWORK: "stopped by the framework's early stopping",
        END_DIVERGED: "diverged",
        END_FAILED: "failed",
    }
    counts = collections.Counter(words.get(t.end_reason) or t.status for t in trials)
    return ", ".join(f"{n} {what}" for what, n in counts.most_common())


def _reason_kind(reason: str) -> str:
    return reason.split(" at ")[0][:200]
