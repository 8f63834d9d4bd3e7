"""`--framework yolo,maskrcnn` (or `all`): one search whose trials choose the framework and its model.

The experiment is made like a single-framework one (runners/tune.py: its steps are handed in, as
`steps`), with these differences:
- every framework named gets its backend (`--backend` applies to the frameworks that have it), its
  own search space (search_spaces/<framework>(_cpu).yaml, or a `--space` file naming it), its model
  choices (the adapter's `model_choices(_cpu)`, or `--model FRAMEWORK=MODEL,MODEL`) and weights
  (`--weights FRAMEWORK=WEIGHTS`); the space is conditional (search_spaces/conditional.py);
- the data is prepared once, in every layout any of the frameworks trains on;
- one `--max-epochs` for all (ASHA's max_t is one number, and trials compare at equal epochs):
  without a GPU the largest of the frameworks' own CPU defaults, so that no framework is judged
  on fewer epochs than it is given alone (YOLO 30, Mask R-CNN 12: 30);
- the first trials are one per framework (enqueued, the rest sampled), so every framework is
  measured even in a small search;
- the metric is one of segtune's COCO metrics (a native metric is one framework's own).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from segtune.core.choice import FRAMEWORK_KEY, param_key
from segtune.core.errors import ConfigError, SpaceError
from segtune.core.record import RunSettings, default_mode
from segtune.runners.plan.start_points import default_point
from segtune.runners.plan.starting_point import given_weights, starting_point_of_choices
from segtune.search_spaces.conditional import ConditionalSpace, FrameworkBranch
from segtune.search_spaces.space import SearchSpace, load_space
from segtune.trainers.base import TrainerAdapter, TrainingShape
from segtune.trainers.registry import BACKENDS, FRAMEWORKS, get_adapter, resolve_backend

ALL = "all"
# Options that describe one framework's experiment and have no meaning for several at once.
_SINGLE_ONLY = {"config": "--config trains one configuration of one framework",
                "warm_start": "--warm-start reuses an experiment of one framework",
                "start_from": "--start-from is a configuration of one framework"}


def framework_names(text: str) -> list[str]:
    """The frameworks named by --framework ("yolo", "yolo,maskrcnn", "all"), checked and deduplicated."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    if names == [ALL]:
        return [ALL]
    unknown = [n for n in names if n not in FRAMEWORKS]
    if unknown or not names:
        raise ConfigError(f"unknown framework {', '.join(unknown) or repr(text)}; choose one or more of "
                          f"{', '.join(FRAMEWORKS)} (comma-separated), or {ALL}")
    return list(dict.fromkeys(names))


def per_framework(values: list[str] | None, option: str, frameworks: list[str]) -> dict[str, str]:
    """FRAMEWORK=VALUE items of a per-framework option."""
    found: dict[str, str] = {}
    for item in values or []:
        framework, sep, value = item.partition("=")
        if not sep or not value:
            raise ConfigError(f"{option} {item!r}: with several frameworks write FRAMEWORK=VALUE "
                              f"(e.g. {option} {frameworks[0]}=...)")
        if framework not in frameworks:
            raise ConfigError(f"{option} {item!r}: {framework!r} is not one of this search's frameworks "
                              f"({', '.join(frameworks)})")
        if framework in found:
            raise ConfigError(f"{option} names {framework} twice; give each framework once")
        found[framework] = value
    return found


def check_framework_args(args: argparse.Namespace) -> None:
    """`args.frameworks` from --framework. With one framework, --model/--weights/--space become the
    single values the rest of the runner uses (a FRAMEWORK=VALUE item for that framework is fine)."""
    args.frameworks = framework_names(args.framework)
    if len(args.frameworks) > 1 or args.frameworks == [ALL]:
        return
    framework = args.frameworks[0]
    args.framework = framework
    for option in ("model", "weights"):
        values = getattr(args, option) or []
        if len(values) > 1:
            raise ConfigError(f"--{option} takes one value for one framework; got {len(values)}")
        value = values[0] if values else ("" if option == "model" else None)
        named, sep, rest = (value or "").partition("=")
        if sep and named in FRAMEWORKS:  # FRAMEWORK=VALUE, as with several frameworks
            value = per_framework(values, f"--{option}", [framework])[framework]
        if option == "model" and "," in value:
            raise ConfigError(f"--model {value!r}: model choices are for a search over several frameworks; "
                              f"give one model")
        setattr(args, option, value)
    if args.space and len(args.space) > 1:
        raise ConfigError(f"--space takes one file for one framework; got {len(args.space)}")
    args.space = args.space[0] if args.space else None


def resolve_frameworks(names: list[str]) -> list[str]:
    """`all`: every registered framework whose library is installed (its adapter imports)."""
    if names != [ALL]:
        return names
    installed = []
    for framework in FRAMEWORKS:
        try:
            get_adapter(framework, "auto")
        except ConfigError:
            continue
        installed.append(framework)
    if not installed:
        raise ConfigError(f"--framework {ALL}: none of {', '.join(FRAMEWORKS)} is installed; install one")
    return installed


def default_models(adapter: type[TrainerAdapter], has_gpu: bool) -> tuple[str, ...]:
    choices = adapter.model_choices if has_gpu else adapter.model_choices_cpu
    return choices or ((adapter.default_model if has_gpu else adapter.default_model_cpu) or adapter.default_model,)


def _backends(frameworks: list[str], backend: str) -> dict[str, str]:
    if backend not in ("auto", "", None) and not any(backend in BACKENDS[f] for f in frameworks):
        raise ConfigError(f"--backend {backend} belongs to none of {', '.join(frameworks)}; leave it out or choose "
                          f"one of: {', '.join(b for f in frameworks for b in BACKENDS[f])}")
    return {f: resolve_backend(f, backend if backend in BACKENDS[f] else "auto") for f in frameworks}


def _user_spaces(paths: list[Path] | None, frameworks: list[str]) -> dict[str, SearchSpace]:
    spaces: dict[str, SearchSpace] = {}
    for path in paths or []:
        space = load_space(path)
        if space.framework not in frameworks:
            raise SpaceError(f"{path} names framework {space.framework!r}; with several frameworks each --space "
                             f"file says which one it is for (framework: {' or '.join(frameworks)})")
        if space.framework in spaces:
            raise SpaceError(f"--space gives two files for {space.framework}; give one")
        spaces[space.framework] = space
    return spaces


def _branch(framework: str, adapter: type[TrainerAdapter], space: SearchSpace, models: tuple[str, ...],
            weights: str | None, seed: int, steps: ModuleType) -> tuple[FrameworkBranch, str | None]:
    if adapter.seed_key not in space.keys:
        space = space.with_fixed({adapter.seed_key: seed})
    steps._check_space_keys(space, adapter)
    resolved = [adapter.resolve_model(m, weights) for m in models]
    return FrameworkBranch(tuple(dict.fromkeys(m for m, _ in resolved)), space), resolved[0][1]


def run_search(args: argparse.Namespace, steps: ModuleType) -> int:
    """A new multi-framework search, or the resume of one (`steps`: runners/tune.py itself)."""
    frameworks = resolve_frameworks(args.frameworks)
    if len(frameworks) == 1:  # `all` with one framework installed: an ordinary search
        print(f"segtune: --framework {ALL}: only {frameworks[0]} is installed")
        args.framework = frameworks[0]
        return steps._run(args)
    for option, why in _SINGLE_ONLY.items():
        if getattr(args, option, None):
            raise ConfigError(f"{why}; leave --{option.replace('_', '-')} out of a search over several frameworks")
    backends = _backends(frameworks, args.backend)
    adapters = {f: get_adapter(f, b) for f, b in backends.items()}
    for f, b in backends.items():
        if b:
            print(f"segtune: {f} backend: {b}" + (" (auto)" if args.backend == "auto" else ""))
    storage = steps._writable_dir(args.storage, "--storage")
    name = args.name or f"{'-'.join(frameworks)}-{time.strftime('%Y%m%d-%H%M%S')}"
    experiment_dir = storage / name
    if args.resume:
        args.framework = ",".join(frameworks)
        return steps._resume(args, experiment_dir)
    if experiment_dir.exists():
        raise ConfigError(f"experiment {experiment_dir} already exists; continue it with --resume --name {name}, "
                          f"or choose another --name")
    from segtune.cocodata.evaluator import METRIC_KEYS

    if args.metric not in METRIC_KEYS and not args.objectives:
        raise ConfigError(f"--metric {args.metric!r}: a search over several frameworks compares them on segtune's "
                          f"COCO metrics ({', '.join(METRIC_KEYS[:4])}, ...); a native metric is one framework's")
    mode = args.mode or default_mode(args.metric)
    options = _options(args, adapters)
    models = {f: tuple(v.split(",")) for f, v in per_framework(args.model, "--model", frameworks).items()}
    weights = per_framework(args.weights, "--weights", frameworks)
    user_spaces = _user_spaces(args.space, frameworks)
    for f, choices in models.items():  # what the user wrote is checked before anything starts
        for model in choices:
            adapters[f].resolve_model(model, given_weights(weights.get(f)))
    if args.address is None and args.gpus_per_trial:
        steps._check_local_gpus(args.gpus_per_trial)
    layouts = {layout.name: layout for a in adapters.values() for layout in a.data_layouts()}
    dataset = steps._prepare_data(args, tuple(layouts.values()))

    from segtune.cocodata.evaluator import CocoEvaluator
    from segtune.runners.plan.budget import search_budget
    from segtune.runners.plan.confirm import chosen_confirm_top, confirm_plan
    from segtune.runners.plan.resources import plan_resources
    from segtune.runners.plan.sampler import plan_sampler
    from segtune.runners.search.tuner import build_tuner

    steps._start_ray(args.address, steps.output_mode(args))
    has_gpu = steps._cluster_has_gpu()
    starts = {f: starting_point_of_choices(a, models=models.get(f, ()), weights=weights.get(f), has_gpu=has_gpu,
                                           space=Path(user_spaces[f].source) if f in user_spaces else None)
              for f, a in adapters.items()}
    # One max_epochs for all: the largest of the frameworks' own CPU defaults (see the module docstring),
    # fine-tuning defaults only when every framework fine-tunes.
    max_epochs, grace, num_samples = search_budget(args, has_gpu, max(a.default_epochs_cpu for a in adapters.values()),
                                                   all(s.pretrained for s in starts.values()))
    branches, chosen_weights = {}, {}
    for f, adapter in adapters.items():
        start = starts[f]
        space = user_spaces.get(f) or load_space(start.space_path)
        choices = models.get(f) or ((start.model,) if start.pretrained else default_models(adapter, has_gpu))
        branches[f], chosen_weights[f] = _branch(f, adapter, space, choices, start.weights, args.seed, steps)
        if start.note or not args.quiet:
            print(f"segtune: {f}: {start.header(choices)}")
    space = ConditionalSpace(branches)
    confirm_top = chosen_confirm_top(args, num_samples, has_gpu, searched=True)
    resources = plan_resources(args.gpus_per_trial, args.cpus_per_trial, args.workers, num_samples)
    settings = RunSettings(
        framework=",".join(frameworks), backend="", dataset=dataset, metric=args.metric, mode=mode,
        max_epochs=max_epochs, model="", weights=None,
        gpus_per_trial=resources.gpus_per_trial, cpus_per_trial=resources.cpus_per_trial,
        workers=resources.workers, max_detections=CocoEvaluator(dataset.val_json).max_dets,
        seed=args.seed, space=space.union().to_dict(), experiment_dir=str(experiment_dir), options=options,
        num_samples=num_samples, grace_period=grace, reduction_factor=args.reduction_factor,
        max_concurrent=resources.max_concurrent, max_failures=args.max_failures, time_budget=args.time_budget,
        study_storage=args.study_storage or "", study_name=name,
        frameworks={f: {"backend": backends[f], "models": list(b.models), "weights": chosen_weights[f],
                        "space": b.space.to_dict()} for f, b in branches.items()},
        objectives=args.objectives, sampler=args.sampler, scheduler=args.scheduler, budget_epochs=args.budget_epochs,
        confirm_top=confirm_top, confirm_seeds=args.confirm_seeds if confirm_top else 0,
    )
    first_points = [_first_point(f, adapters[f], branches[f].space, args.sampler,
                                 TrainingShape(dataset.num_train_images, dataset.num_classes, max_epochs,
                                               dict(branches[f].space.fixed)))
                    for f in frameworks][:num_samples]
    _print_plan(settings, branches, num_samples, resources, args.quiet)
    steps.print_search_plan(settings, plan_sampler(num_samples, len(first_points), args.sampler),
                            [f"{f}'s defaults" for f in frameworks][:num_samples], confirm_plan(settings))
    experiment_dir.mkdir(parents=True)
    tuner = build_tuner(settings, space, experiment_dir, first_points=first_points, output=steps.output_mode(args))
    settings.save(experiment_dir)
    steps._print_study(settings, experiment_dir, space.union())
    return steps._finish(tuner.fit(), settings, experiment_dir)


def _first_point(framework: str, adapter: type[TrainerAdapter], space: SearchSpace, sampler: str,
                 shape: TrainingShape) -> dict[str, Any]:
    """One framework's first trial: its defaults fitted into its space (runners/start_points.py), under
    the framework's keys; only the framework's choice for a random-search baseline."""
    point: dict[str, Any] = {FRAMEWORK_KEY: framework}
    if sampler == "tpe":
        defaults = default_point(space, adapter.default_params(space.searched, shape))
        point.update({param_key(framework, key): value for key, value in defaults.items()})
    return point


def _options(args: argparse.Namespace, adapters: dict[str, type[TrainerAdapter]]) -> dict[str, Any]:
    """Adapter options (--iters-per-epoch): taken when at least one framework understands them; the
    others ignore them."""
    from segtune.runners.command.parser import ADAPTER_OPTIONS

    given = {name: getattr(args, name) for name in ADAPTER_OPTIONS if getattr(args, name) is not None}
    for name in given:
        if not any(name in a.options for a in adapters.values()):
            raise ConfigError(f"--{name.replace('_', '-')} applies to none of {', '.join(adapters)}; leave it out")
    return given


def _print_plan(settings: RunSettings, branches: dict[str, FrameworkBranch], num_samples: int, resources,
                quiet: bool) -> None:
    if not quiet:
        for f, branch in branches.items():
            weights = settings.frameworks[f]["weights"]
            print(f"segtune: {f}: models {', '.join(branch.models)}" + (f", starting from {weights}" if weights else
                                                                       ", from scratch")
                  + f"; searching {sorted(branch.space.searched)}")
    print(f"segtune: {num_samples} trials choosing among {', '.join(branches)} (the first "
          f"{min(num_samples, len(branches))} one of each), up to {settings.max_epochs} epochs each, "
          f"{resources.max_concurrent} at a time ({resources.gpus_per_trial:g} GPU, {resources.cpus_per_trial:g} CPU "
          f"per trial)")
    if not settings.objectives and settings.scheduler == "asha":
        print("segtune: ASHA compares each trial with trials of its own framework (their learning curves differ)")
    if resources.warning:
        print(f"segtune: warning: {resources.warning}")
