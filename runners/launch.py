"""Search training hyperparameters: `python runners/tune.py --framework yolo [--data DIR] ...`.

Order of work: check every argument, the search space and the model (no Ray, nothing written) ->
start or join Ray and check its resources -> validate and convert the data once -> run the search.
Bad input ends with one line on stderr and exit status 2; an experiment is never overwritten.
"""
from __future__ import annotations

import dataclasses
import os
import sys
import time
from pathlib import Path
from typing import Any

from segtune.core.errors import ConfigError, SpaceError, run_cli
from segtune.core.record import SETTINGS_FILE, RunSettings, absolute_study_url, default_mode
from segtune.core.score import SCORE_KEY, SCORE_WINDOW
from segtune.runners.command.parser import adapter_options, build_parser, given_options, output_mode, validate_args
from segtune.runners.plan.frameworks import ALL, run_search
from segtune.runners.plan.objectives import ASHA_NOTE, COST_OBJECTIVES
from segtune.runners.plan.resume import check_resume_options
from segtune.runners.plan.sampler import plan_sampler
from segtune.runners.plan.start_points import read_params_file, start_points
from segtune.runners.plan.starting_point import FROM_SCRATCH, given_weights, starting_point
from segtune.search_spaces.conditional import conditional_space
from segtune.search_spaces.space import SearchSpace, default_space_path, load_space, load_yaml, parse_space, thaw
from segtune.trainers.base import TrainerAdapter, TrainingShape
from segtune.trainers.registry import dataset_readers, get_adapter, resolve_backend

PROG = "tune.py"
# A forced experiment snapshot after every checkpoint is what makes a killed search resumable.
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
# A reused trial process first waits for the stopped trial's framework to wind down (its data
# loaders, its logs); Ray's default of 2 s gives up on a busy machine and starts a new process.
os.environ.setdefault("TUNE_FUNCTION_THREAD_TIMEOUT_S", "30")


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    parser = build_parser()
    parser.prog = prog
    args = parser.parse_args(argv)
    args.given = given_options(sys.argv[1:] if argv is None else argv)
    try:
        return run_cli(prog, lambda: _run(args))
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; continue later with --resume --name <name>", file=sys.stderr)
        return 130


def _run(args) -> int:
    validate_args(args)
    if args.study_storage:
        args.study_storage = absolute_study_url(args.study_storage)
    if len(args.frameworks) > 1 or args.frameworks == [ALL]:  # the trials choose the framework
        return run_search(args, steps=sys.modules[__name__])
    config = load_yaml(args.config, "config") if args.config is not None else None
    if isinstance(config, dict):
        _apply_config_defaults(args, config)
    backend = resolve_backend(args.framework, args.backend)
    adapter = get_adapter(args.framework, backend)
    if backend:
        print(f"segtune: {args.framework} backend: {backend}" + (" (auto)" if args.backend == "auto" else ""))
    storage = _writable_dir(args.storage, "--storage")
    name = args.name or f"{args.framework}-{time.strftime('%Y%m%d-%H%M%S')}"
    experiment_dir = storage / name
    if args.resume:
        return _resume(args, experiment_dir)
    if experiment_dir.exists():
        raise ConfigError(
            f"experiment {experiment_dir} already exists; continue it with --resume --name {name}, "
            f"or choose another --name"
        )
    mode = args.mode or default_mode(args.metric)
    if not (args.objectives and args.metric in COST_OBJECTIVES):
        _check_metric(args.metric, adapter)
    options = adapter_options(args, adapter)
    warm_sources = _check_study_options(args, name, mode, storage)

    # What the user wrote is checked before anything starts: a typo costs seconds, not a Ray start.
    user_space = _load_space(args, adapter, False, config) if (args.space or args.config) else None
    if args.start_from is not None:
        read_params_file(args.start_from, args.framework)
    if args.model or given_weights(args.weights):
        adapter.resolve_model(args.model, given_weights(args.weights))
    if args.address is None and args.gpus_per_trial:
        _check_local_gpus(args.gpus_per_trial)
    dataset = _prepare_data(args, adapter.data_layouts())

    from segtune.cocodata.evaluator import CocoEvaluator
    from segtune.runners.plan.budget import search_budget
    from segtune.runners.plan.confirm import chosen_confirm_top, confirm_plan
    from segtune.runners.plan.resources import plan_resources
    from segtune.runners.search.tuner import build_tuner, ordered_first_points

    _start_ray(args.address, output_mode(args))
    has_gpu = _cluster_has_gpu()
    start = starting_point(adapter, model=args.model, weights=args.weights, space=args.space or args.config,
                           has_gpu=has_gpu)
    max_epochs, grace, num_samples = search_budget(args, has_gpu, adapter.default_epochs_cpu, start.pretrained)
    space = user_space or _load_space(args, adapter, not has_gpu, None, start.space_path)
    if not space.searched:  # a fixed configuration (--config) is one trial
        num_samples = 1
    # A random-search baseline starts from nothing of segtune's (an explicit --start-from still counts).
    shape = TrainingShape(dataset.num_train_images, dataset.num_classes, max_epochs, dict(space.fixed))
    defaults = adapter.default_params(space.searched, shape) if args.sampler == "tpe" else {}
    first = start_points(space, defaults, args.start_from, args.framework,
                         adapter.seed_key, lambda text: print(f"segtune: warning: {text}")) if space.searched else []
    confirm_top = chosen_confirm_top(args, num_samples, has_gpu, bool(space.searched))
    model, weights = adapter.resolve_model(start.model, start.weights)
    resources = plan_resources(args.gpus_per_trial, args.cpus_per_trial, args.workers, num_samples)
    settings = RunSettings(
        framework=args.framework, backend=backend, dataset=dataset, metric=args.metric, mode=mode,
        max_epochs=max_epochs, model=model, weights=weights,
        gpus_per_trial=resources.gpus_per_trial, cpus_per_trial=resources.cpus_per_trial,
        workers=resources.workers, max_detections=CocoEvaluator(dataset.val_json).max_dets,
        seed=args.seed, space=space.to_dict(), experiment_dir=str(experiment_dir), options=options,
        num_samples=num_samples, grace_period=grace, reduction_factor=args.reduction_factor,
        max_concurrent=resources.max_concurrent, max_failures=args.max_failures, time_budget=args.time_budget,
        study_storage=args.study_storage or "", study_name=name, warm_start=[str(s.path) for s in warm_sources],
        confirm_top=confirm_top, confirm_seeds=args.confirm_seeds if confirm_top else 0,
        sampler=args.sampler, scheduler=args.scheduler, budget_epochs=args.budget_epochs,
        objectives=args.objectives,
    )
    warm_start = None
    if warm_sources and space.searched:
        from segtune.runners.search.warm_start import load_warm_start

        warm_start = load_warm_start(warm_sources, space, mode, num_points=max(1, min(3, num_samples // 4)))
        print(f"segtune: {warm_start.note}")
        if warm_start.warning:
            print(f"segtune: warning: {warm_start.warning}")
    if not args.quiet or start.note:
        print(f"segtune: {dataclasses.replace(start, model=model, weights=weights).header()}")
    print(f"segtune: {num_samples} trials, up to {max_epochs} epochs each, "
          f"{resources.max_concurrent} at a time ({resources.gpus_per_trial:g} GPU, "
          f"{resources.cpus_per_trial:g} CPU per trial; cluster {resources.cluster_gpus:g} GPUs, "
          f"{resources.cluster_cpus:g} CPUs); searching {sorted(space.searched)}")
    if resources.warning:
        print(f"segtune: warning: {resources.warning}")
    if space.searched:
        starts = len(ordered_first_points(warm_start, [point for _, point in first]))
        print_search_plan(settings, plan_sampler(num_samples, starts, args.sampler),
                          (["the warm start's best"] if warm_start else []) + [label for label, _ in first],
                          confirm_plan(settings))
    experiment_dir.mkdir(parents=True)  # new (checked above); the study's SQLite file goes in it
    tuner = build_tuner(settings, space, experiment_dir, warm_start=warm_start,
                        first_points=[point for _, point in first], output=output_mode(args))
    settings.save(experiment_dir)
    _print_study(settings, experiment_dir, space)
    return _finish(tuner.fit(), settings, experiment_dir)


def _resume(args, experiment_dir: Path) -> int:
    from ray import tune

    if not (experiment_dir / SETTINGS_FILE).exists() or not tune.Tuner.can_restore(str(experiment_dir)):
        raise ConfigError(
            f"nothing to resume at {experiment_dir}; check --name and --storage, or start it without --resume"
        )
    from segtune.runners.search.tuner import restore_tuner

    try:
        settings = RunSettings.load(experiment_dir)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise ConfigError(
            f"{experiment_dir / SETTINGS_FILE} cannot be read ({exc}); it was not written by this version "
            f"of runners/tune.py, start a new experiment"
        ) from None
    # The directory may have moved since it was made (a copy, another mount): trials write here now.
    settings = dataclasses.replace(settings, experiment_dir=str(experiment_dir))
    if set(settings.framework.split(",")) != set(args.framework.split(",")):
        raise ConfigError(f"{experiment_dir} is a {settings.framework} experiment; resume it with --framework {settings.framework}")
    output = output_mode(args)
    if not settings.num_samples:  # recorded before segtune kept the budget: Ray's own restore, as it was
        check_resume_options(args, settings, legacy=True)
        _start_ray(args.address, output)
        print(f"segtune: resuming {experiment_dir}")
        return _finish(restore_tuner(experiment_dir, settings, output).fit(), settings, experiment_dir)
    settings = check_resume_options(args, settings)
    from segtune.runners.search.tuner import build_tuner
    from segtune.search_spaces.space import SearchSpace

    _start_ray(args.address, output)
    space = conditional_space(settings.frameworks) if settings.frameworks else SearchSpace.from_dict(settings.space)
    print(f"segtune: resuming {experiment_dir}: {settings.num_samples} trials in all"
          + (f", time budget {settings.time_budget:g}s for this run" if settings.time_budget else ""))
    tuner = build_tuner(settings, space, experiment_dir, resume=True, output=output)
    settings.save(experiment_dir)
    _print_study(settings, experiment_dir, SearchSpace.from_dict(settings.space))
    return _finish(tuner.fit(), settings, experiment_dir)


def print_search_plan(settings: RunSettings, sampler_plan, first: list[str], confirm) -> None:
    """How trials are judged, proposed, stopped and confirmed (also for a search over several frameworks)."""
    print(f"segtune: a trial's score ({SCORE_KEY}): its best ({settings.mode}) mean of {settings.metric} over "
          f"{SCORE_WINDOW} consecutive epochs")
    print(f"segtune: {sampler_plan.describe()}; first trials: {', '.join(first) or 'none'}")
    if settings.objectives:
        print(f"segtune: objectives {', '.join(f'{m} ({d})' for m, d in settings.objectives)}; {ASHA_NOTE}")
        return
    stopping = "no early stopping" if settings.scheduler == "none" else (
        f"ASHA (grace {settings.grace_period}, reduction factor {settings.reduction_factor:g}"
        f"{', per framework' if settings.frameworks else ''})")
    budget = f"; ends after {settings.budget_epochs} epochs in all" if settings.budget_epochs else ""
    print(f"segtune: {stopping}{budget}; {confirm.describe()}")


def _check_study_options(args, name: str, mode: str, storage: Path) -> list:
    """--study-storage and --warm-start, checked before anything is written; the warm-start sources."""
    if args.study_storage:
        from segtune.runners.search.study import open_storage, study_exists

        if study_exists(open_storage(args.study_storage), name):
            raise ConfigError(f"--study-storage {args.study_storage} already holds a study named {name}; "
                              f"choose another --name")
    if not args.warm_start:
        return []
    if args.config is not None:
        raise ConfigError("--warm-start seeds a search; --config trains one fixed configuration: leave one out")
    from segtune.runners.search.warm_start import find_sources

    return find_sources(args.warm_start, storage, args.framework, args.metric, mode)


def _print_study(settings: RunSettings, experiment_dir: Path, space: SearchSpace) -> None:
    if space.searched:
        from segtune.runners.search.study import dashboard_command

        print(f"segtune: Optuna study {settings.study_name or experiment_dir.name}; watch it live: "
              f"{dashboard_command(settings.study_url(experiment_dir))}")


def _start_ray(address: str | None, output: str) -> None:
    from segtune.runners.cluster.connect import init_ray
    from segtune.runners.view.progress import quiet_libraries

    quiet_libraries(output)  # before Ray starts: some of its notices come from ray.init
    init_ray(address)


def _finish(results, settings: RunSettings, experiment_dir: Path) -> int:
    from segtune.runners.view.summary import summarize

    status, text = summarize(results, settings, experiment_dir)
    print(text, file=sys.stderr if status else sys.stdout)
    return status


def _apply_config_defaults(args, config: dict) -> None:
    """An exported config names its backend, model and weights: use them unless the command line
    says otherwise, so that it trains the same model again."""
    framework = config.get("framework")
    if framework and framework != args.framework:
        raise ConfigError(f"{args.config} is a {framework} config; run it with --framework {framework}")
    if args.backend == "auto" and config.get("backend"):
        args.backend = config["backend"]
    if not args.model and config.get("model"):
        args.model = str(config["model"])
    if args.weights is None and config.get("weights"):
        args.weights = str(config["weights"])
    elif args.weights is None and "weights" in config:  # null: it was trained from scratch
        args.weights = FROM_SCRATCH


def _prepare_data(args, layouts: tuple):
    """Validated and converted once, into every layout in `layouts` (the adapters' data_layouts())."""
    from segtune.cocodata.prepare import prepare_dataset

    started = time.perf_counter()
    dataset = prepare_dataset(
        args.data, train_json=args.train_json, train_images=args.train_images,
        val_json=args.val_json, val_images=args.val_images, val_fraction=args.val_fraction,
        seed=args.seed, cache_dir=_writable_dir(args.cache_dir, "--cache-dir"),
        layouts=layouts, readers=dataset_readers(), log=lambda msg: print(f"segtune: {msg}"),
    )
    if not args.quiet:
        print(f"segtune: data ready in {time.perf_counter() - started:.1f}s: {dataset.num_train_images} train / "
              f"{dataset.num_val_images} val images, {dataset.num_classes} classes ({dataset.name})")
    return dataset


def _check_local_gpus(gpus_per_trial: float) -> None:
    import torch

    available = torch.cuda.device_count()
    if gpus_per_trial > available:
        raise ConfigError(
            f"--gpus-per-trial {gpus_per_trial:g} is more than this machine has ({available} GPUs); "
            f"lower it (fractions like 0.5 share a GPU)"
        )


def _writable_dir(path: Path, option: str) -> Path:
    """`path` made absolute, if it is, or can become, a directory this process may write."""
    path = path.expanduser().resolve()
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{option} directory {path} is not writable; choose another {option}")
    return path


def _cluster_has_gpu() -> bool:
    import ray

    return ray.cluster_resources().get("GPU", 0) > 0


def _check_metric(metric: str, adapter: type[TrainerAdapter]) -> None:
    from segtune.cocodata.evaluator import METRIC_KEYS

    native = adapter.native_metric_names()
    if metric in METRIC_KEYS or metric in native or (not native and metric.startswith(adapter.native_prefix)):
        return
    examples = ", ".join(sorted(native)[:6]) if native else f"names starting with {adapter.native_prefix!r}"
    raise ConfigError(
        f"--metric {metric!r} is never reported by {adapter.display_name()}; use one of "
        f"{', '.join(METRIC_KEYS)} or a native metric ({examples}, ...)"
    )


def _load_space(args, adapter: type[TrainerAdapter], cpu_only: bool, config: Any,
                default_path: Path | None = None) -> SearchSpace:
    """The search space (--space, or `default_path`: the starting point's default), or the fixed values
    of --config (`config`, already read)."""
    if args.config is not None:
        params = config.get("params", config) if isinstance(config, dict) else None
        if not isinstance(params, dict) or not params:
            raise SpaceError(f"{args.config}: a config is a mapping of parameter values (or a 'params' mapping)")
        if any(isinstance(v, dict) for v in params.values()):
            raise SpaceError(f"{args.config}: --config takes fixed values only; put ranges in a --space file")
        space = parse_space(params, source=str(args.config), framework=args.framework)
    else:
        path = args.space or default_path or default_space_path(args.framework, cpu_only=cpu_only)
        space = load_space(path)
        if space.framework and space.framework != args.framework:
            raise SpaceError(f"{path} is a {space.framework} search space; pass a {args.framework} one with --space")
    if adapter.seed_key not in space.keys:
        space = space.with_fixed({adapter.seed_key: args.seed})
    _check_space_keys(space, adapter)
    return space


def _check_space_keys(space: SearchSpace, adapter: type[TrainerAdapter]) -> None:
    """Every key must be the framework's; each categorical choice must be a value it accepts."""
    base = {k: thaw(v) for k, v in space.fixed.items()}
    for key, dist in space.searched.items():
        choices = getattr(dist, "choices", None)
        base[key] = thaw(choices[0]) if choices else dist.low
    try:
        adapter.check_params(base)
        for key, dist in space.searched.items():
            for choice in getattr(dist, "choices", ())[1:]:
                adapter.check_params({**base, key: thaw(choice)})
    except ConfigError as exc:
        raise ConfigError(f"{space.source}: {exc}") from None
