"""A new experiment, planned: the request, what was checked before the start, and the cluster's
facts (GPUs or not, its nodes) become the `RunSettings` every trial shares, the space the searcher
samples and the first trials.

A search over one framework is the one-entry case of several; what really differs is kept to a
few lines: several frameworks make a conditional space (the trial chooses the framework, its keys
are FRAMEWORK=VALUE ones) with one first trial per framework, and their record keeps each
framework's backend, model choices, weights and space (`RunSettings.frameworks`: one entry per
framework, one for a single framework). `RunSettings` is constructed here only (`_settings`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segtune.cocodata.evaluator import CocoEvaluator
from segtune.core import sections
from segtune.core.record import PreparedDataset, RunSettings
from segtune.runners.plan.budget import search_budget
from segtune.runners.plan.confirm import chosen_confirm_top
from segtune.runners.plan.first_trials import start_points
from segtune.runners.plan.frameworks import default_models, framework_first_point, framework_space
from segtune.runners.plan.resources import Resources, plan_resources
from segtune.runners.plan.starting_point import StartingPoint
from segtune.search_spaces.conditional import ConditionalSpace, FrameworkBranch
from segtune.search_spaces.space import SearchSpace
from segtune.trainers.base import TrainerAdapter, TrainingShape

if TYPE_CHECKING:
    from segtune.runners.request import FrameworkRequest, TuneRequest
from dataclasses import replace

from segtune.core.score import SCORE_KEY, SCORE_WINDOW
from segtune.runners.plan.budget import SamplerPlan, plan_sampler
from segtune.runners.plan.confirm import ConfirmPlan, confirm_plan
from segtune.runners.plan.objectives import ASHA_NOTE


@dataclass(frozen=True)
class Framework:
    """One framework of the search, as the trials will see it: its backend and adapter, its
    (resolved) model choices and weights. A search space comes once the hardware is known."""

    name: str
    backend: str  # "" for a framework with one library
    adapter: type[TrainerAdapter]


@dataclass(frozen=True)
class Preflight:
    """What was checked before anything started (runners/launch.py), for the plan."""

    mode: str  # the metric's direction (--mode, or the metric's usual one)
    options: dict[str, Any]  # adapter options the trials get
    warm_sources: tuple = ()  # earlier experiments seeding the study (runners/search/warm_start.py)
    spaces: dict[str, SearchSpace] | None = None  # the --space / --config spaces given, per framework


@dataclass(frozen=True)
class Experiment:
    """The plan of a new search."""

    settings: RunSettings
    space: SearchSpace | ConditionalSpace  # what the searcher samples (conditional with several frameworks)
    first: tuple[tuple[str, dict[str, Any]], ...]  # the first trials: (what it is, point)
    resources: Resources
    starts: dict[str, StartingPoint]  # each framework's starting point (pretrained or from scratch, and why)


def plan_experiment(
    request: TuneRequest,
    frameworks: tuple[Framework, ...],
    preflight: Preflight,
    dataset: PreparedDataset,
    has_gpu: bool,
    experiment_dir: Path,
    name: str,
    starts: dict[str, StartingPoint],
    warn: Callable[[str], None],
) -> Experiment:
    """The budget, spaces, models, first trials, confirmation and resources of a new search.

    Args:
        request: the checked request.
        frameworks: one entry per request.frameworks, in the same order.
        preflight: what was checked before the start.
        dataset: the prepared data.
        has_gpu: whether the cluster has GPUs (the defaults of epochs, spaces and models depend on it).
        experiment_dir, name: where the experiment goes, and the study's name.
        starts: each framework's starting point (runners/plan/starting_point.py): its model, weights,
            default space, and whether the defaults are fine-tuning ones.
        warn: prints a warning (a --start-from key outside the space).

    Raises:
        ConfigError: a budget that cannot work (grace period beyond max epochs), a --start-from
            that sets nothing of the space, resources the cluster cannot hold.
    """
    # One max_epochs for all: the largest of the frameworks' own CPU defaults (runners/plan/frameworks.py).
    max_epochs, grace, num_samples = search_budget(
        request.budget,
        has_gpu,
        max(f.adapter.default_epochs_cpu for f in frameworks),
        pretrained=all(s.pretrained for s in starts.values()),
    )
    given_spaces = preflight.spaces or {}
    spaces = {
        f.name: given_spaces.get(f.name)
        or framework_space(f.name, f.adapter, request.seed, space_file=starts[f.name].space_path)
        for f in frameworks
    }
    models = {
        f.name: _models(starts[f.name], wanted, f.adapter, has_gpu, request.several)
        for wanted, f in zip(request.frameworks, frameworks, strict=True)
    }
    if request.several:
        space: SearchSpace | ConditionalSpace = ConditionalSpace(
            {f.name: FrameworkBranch(models[f.name][0], spaces[f.name]) for f in frameworks}
        )
    else:
        space = spaces[frameworks[0].name]
        if not space.searched:  # a fixed configuration (--config) is one trial
            num_samples = 1
    searched = request.several or bool(space.searched)
    first = _first_trials(request, frameworks, spaces, dataset, max_epochs, num_samples, warn) if searched else []
    confirm_top = chosen_confirm_top(
        request.confirm.top, bool(request.objective.objectives), num_samples, has_gpu, searched
    )
    resources = plan_resources(
        request.resources.gpus_per_trial, request.resources.cpus_per_trial, request.resources.workers, num_samples
    )
    settings = _settings(
        request,
        frameworks,
        preflight,
        dataset,
        experiment_dir,
        name,
        space,
        spaces,
        models,
        (max_epochs, grace, num_samples, confirm_top),
        resources,
    )
    return Experiment(settings, space, tuple(first), resources, starts)


def _models(
    start: StartingPoint, wanted: FrameworkRequest, adapter: type[TrainerAdapter], has_gpu: bool, several: bool
) -> tuple[tuple[str, ...], str | None]:
    """(model choices, weights) as every trial sees them, resolved (local files made absolute): the
    starting point's model and weights; with several frameworks the choices given, or the adapter's
    model choices when training from scratch (pretrained weights belong to one model)."""
    if several:
        choices = wanted.models or ((start.model,) if start.pretrained else default_models(adapter, has_gpu))
    else:
        choices = (start.model,)
    resolved = [adapter.resolve_model(model, start.weights) for model in choices]
    return tuple(dict.fromkeys(model for model, _ in resolved)), resolved[0][1]


def _first_trials(
    request: TuneRequest,
    frameworks: tuple[Framework, ...],
    spaces: dict[str, SearchSpace],
    dataset: PreparedDataset,
    max_epochs: int,
    num_samples: int,
    warn: Callable[[str], None],
) -> list[tuple[str, dict[str, Any]]]:
    """One framework: its defaults (not for a random-search baseline) then --start-from
    (runners/plan/first_trials.py). Several: one trial per framework, its defaults under its keys."""

    def shape(space: SearchSpace) -> TrainingShape:
        return TrainingShape(dataset.num_train_images, dataset.num_classes, max_epochs, dict(space.fixed))

    sampler = request.budget.sampler
    if request.several:
        return [
            (
                f"{f.name}'s defaults",
                framework_first_point(f.name, f.adapter, spaces[f.name], sampler, shape(spaces[f.name])),
            )
            for f in frameworks
        ][:num_samples]
    (framework,) = frameworks
    space = spaces[framework.name]
    defaults = framework.adapter.default_params(space.searched, shape(space)) if sampler == "tpe" else {}
    return start_points(space, defaults, request.study.start_from, framework.name, framework.adapter.seed_key, warn)


def _settings(
    request: TuneRequest,
    frameworks: tuple[Framework, ...],
    preflight: Preflight,
    dataset: PreparedDataset,
    experiment_dir: Path,
    name: str,
    space: SearchSpace | ConditionalSpace,
    spaces: dict[str, SearchSpace],
    models: dict[str, tuple[tuple[str, ...], str | None]],
    budget: tuple[int, int, int, int],
    resources: Resources,
) -> RunSettings:
    """The experiment's record (segtune.json): the one place a RunSettings is made."""
    max_epochs, grace, num_samples, confirm_top = budget
    entries = tuple(
        sections.FrameworkEntry(
            name=f.name,
            backend=f.backend,
            models=models[f.name][0],
            weights=models[f.name][1],
            space=spaces[f.name].to_dict(),
        )
        for f in frameworks
    )
    return RunSettings(
        data=dataset,
        frameworks=entries,
        space=space.union().to_dict() if request.several else space.to_dict(),
        objective=sections.Objective(request.objective.metric, preflight.mode, tuple(request.objective.objectives)),
        budget=sections.Budget(
            max_epochs=max_epochs,
            num_samples=num_samples,
            budget_epochs=request.budget.budget_epochs,
            time_budget=request.budget.time_budget,
        ),
        schedule=sections.Schedule(
            sampler=request.budget.sampler,
            scheduler=request.budget.scheduler,
            grace_period=grace,
            reduction_factor=request.budget.reduction_factor,
        ),
        resources=sections.Resources(
            gpus_per_trial=resources.gpus_per_trial,
            cpus_per_trial=resources.cpus_per_trial,
            workers=resources.workers,
            max_concurrent=resources.max_concurrent,
            max_failures=request.budget.max_failures,
            max_detections=CocoEvaluator(dataset.val_json).max_dets,
        ),
        study=sections.Study(
            storage=request.study.storage or "",
            name=name,
            warm_start=tuple(str(s.path) for s in preflight.warm_sources),
        ),
        confirmation=sections.Confirmation(top=confirm_top, seeds=request.confirm.seeds if confirm_top else 0),
        seed=request.seed,
        options=dict(preflight.options),
        experiment_dir=str(experiment_dir),
    )


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
                lines.append(
                    f"segtune: {entry.name}: {start.header(entry.models)}; "
                    f"searching {sorted(experiment.space.branches[entry.name].space.searched)}"
                )
        lines.append(
            f"segtune: {budget.num_samples} trials choosing among {', '.join(names)} (the "
            f"first {min(budget.num_samples, len(names))} one of each), up to "
            f"{budget.max_epochs} epochs each, {resources.max_concurrent} at a time "
            f"({resources.gpus_per_trial:g} GPU, {resources.cpus_per_trial:g} CPU per trial)"
        )
        if not settings.objective.objectives and settings.schedule.scheduler == "asha":
            lines.append(
                "segtune: ASHA compares each trial with trials of its own framework (their learning curves differ)"
            )
    else:
        entry = settings.sole_framework
        start = replace(experiment.starts[entry.name], model=entry.model, weights=entry.weights)
        if not quiet or start.note:  # the starting point, and why not pretrained weights when they were wanted
            lines.append(f"segtune: {start.header()}")
        lines.append(
            f"segtune: {budget.num_samples} trials, up to {budget.max_epochs} epochs each, "
            f"{resources.max_concurrent} at a time ({resources.gpus_per_trial:g} GPU, "
            f"{resources.cpus_per_trial:g} CPU per trial; cluster {resources.cluster_gpus:g} GPUs, "
            f"{resources.cluster_cpus:g} CPUs); searching {sorted(experiment.space.searched)}"
        )
    if resources.warning:
        lines.append(f"segtune: warning: {resources.warning}")
    if settings.is_multi or experiment.space.searched:
        first = (["the warm start's best"] if warm_start else []) + [label for label, _ in experiment.first]
        lines += search_plan_lines(
            settings, plan_sampler(budget.num_samples, starts, settings.schedule.sampler), first, confirm_plan(settings)
        )
    return lines


def search_plan_lines(
    settings: RunSettings, sampler_plan: SamplerPlan, first: list[str], confirm: ConfirmPlan
) -> list[str]:
    """How trials are judged, proposed, stopped and confirmed (one framework or several)."""
    objective, schedule = settings.objective, settings.schedule
    lines = [
        f"segtune: a trial's score ({SCORE_KEY}): its best ({objective.mode}) mean of {objective.metric} over "
        f"{SCORE_WINDOW} consecutive epochs",
        f"segtune: {sampler_plan.describe()}; first trials: {', '.join(first) or 'none'}",
    ]
    if objective.objectives:
        lines.append(f"segtune: objectives {', '.join(f'{m} ({d})' for m, d in objective.objectives)}; {ASHA_NOTE}")
        return lines
    stopping = (
        "no early stopping"
        if schedule.scheduler == "none"
        else (
            f"ASHA (grace {schedule.grace_period}, reduction factor {schedule.reduction_factor:g}"
            f"{', per framework' if settings.is_multi else ''})"
        )
    )
    budget_epochs = settings.budget.budget_epochs
    budget = f"; ends after {budget_epochs} epochs in all" if budget_epochs else ""
    lines.append(f"segtune: {stopping}{budget}; {confirm.describe()}")
    return lines
