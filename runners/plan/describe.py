"""The plan of a new search in words: the lines `segtune tune` prints before the first trial.

How trials are judged, proposed, stopped and confirmed is the same sentence for one framework and
for several; the lines about models and trials name each framework when there are several.
"""
from __future__ import annotations

from dataclasses import replace

from segtune.core.record import RunSettings
from segtune.core.score import SCORE_KEY, SCORE_WINDOW
from segtune.runners.plan.confirm import ConfirmPlan, confirm_plan
from segtune.runners.plan.experiment import Experiment
from segtune.runners.plan.objectives import ASHA_NOTE
from segtune.runners.plan.sampler import SamplerPlan, plan_sampler


def plan_lines(experiment: Experiment, quiet: bool, warm_start: bool, starts: int) -> list[str]:
    """The plan's lines, each starting "segtune: ".

    Args:
        experiment: the planned search.
        quiet: leave out the model lines (--quiet).
        warm_start: the study is warm-started (its best points run first).
        starts: how many points the study tries before it samples (warm start's and first trials, each once).
    """
    settings, resources = experiment.settings, experiment.resources
    budget = settings.budget
    lines: list[str] = []
    if settings.is_multi:
        names = settings.framework_names
        for entry in settings.frameworks:
            start = replace(experiment.starts[entry.name], weights=entry.weights)
            if not quiet or start.note:
                lines.append(f"segtune: {entry.name}: {start.header(entry.models)}; "
                             f"searching {sorted(experiment.space.branches[entry.name].space.searched)}")
        lines.append(f"segtune: {budget.num_samples} trials choosing among {', '.join(names)} (the "
                     f"first {min(budget.num_samples, len(names))} one of each), up to "
                     f"{budget.max_epochs} epochs each, {resources.max_concurrent} at a time "
                     f"({resources.gpus_per_trial:g} GPU, {resources.cpus_per_trial:g} CPU per trial)")
        if not settings.objective.objectives and settings.schedule.scheduler == "asha":
            lines.append("segtune: ASHA compares each trial with trials of its own framework (their learning "
                         "curves differ)")
    else:
        entry = settings.sole_framework
        start = replace(experiment.starts[entry.name], model=entry.model, weights=entry.weights)
        if not quiet or start.note:  # the starting point, and why not pretrained weights when they were wanted
            lines.append(f"segtune: {start.header()}")
        lines.append(f"segtune: {budget.num_samples} trials, up to {budget.max_epochs} epochs each, "
                     f"{resources.max_concurrent} at a time ({resources.gpus_per_trial:g} GPU, "
                     f"{resources.cpus_per_trial:g} CPU per trial; cluster {resources.cluster_gpus:g} GPUs, "
                     f"{resources.cluster_cpus:g} CPUs); searching {sorted(experiment.space.searched)}")
    if resources.warning:
        lines.append(f"segtune: warning: {resources.warning}")
    if settings.is_multi or experiment.space.searched:
        first = (["the warm start's best"] if warm_start else []) + [label for label, _ in experiment.first]
        lines += search_plan_lines(settings, plan_sampler(budget.num_samples, starts, settings.schedule.sampler),
                                   first, confirm_plan(settings))
    return lines


def search_plan_lines(settings: RunSettings, sampler_plan: SamplerPlan, first: list[str],
                      confirm: ConfirmPlan) -> list[str]:
    """How trials are judged, proposed, stopped and confirmed (one framework or several)."""
    objective, schedule = settings.objective, settings.schedule
    lines = [f"segtune: a trial's score ({SCORE_KEY}): its best ({objective.mode}) mean of {objective.metric} over "
             f"{SCORE_WINDOW} consecutive epochs",
             f"segtune: {sampler_plan.describe()}; first trials: {', '.join(first) or 'none'}"]
    if objective.objectives:
        lines.append(f"segtune: objectives {', '.join(f'{m} ({d})' for m, d in objective.objectives)}; {ASHA_NOTE}")
        return lines
    stopping = "no early stopping" if schedule.scheduler == "none" else (
        f"ASHA (grace {schedule.grace_period}, reduction factor {schedule.reduction_factor:g}"
        f"{', per framework' if settings.is_multi else ''})")
    budget_epochs = settings.budget.budget_epochs
    budget = f"; ends after {budget_epochs} epochs in all" if budget_epochs else ""
    lines.append(f"segtune: {stopping}{budget}; {confirm.describe()}")
    return lines
