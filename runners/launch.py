"""The order of work of `segtune tune`, written down once, for one framework or several.

check (the request against the adapters, the study and the files; no Ray, nothing written) ->
data (validated and converted once) -> cluster (start or join Ray) -> plan (budget, spaces,
resources, the record) -> search -> summary. Bad input ends with one line on stderr and exit
status 2 (runners/command/); an experiment is never overwritten. `--resume` continues a recorded
experiment instead (its plan is its record).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from pathlib import Path

from segtune.core.errors import ConfigError, ExperimentError
from segtune.core.record import SETTINGS_FILE, RunSettings, default_mode
from segtune.runners.plan.experiment import Experiment, Framework, Preflight, plan_experiment, plan_lines
from segtune.runners.plan.first_trials import read_params_file
from segtune.runners.plan.frameworks import ALL, adapter_options, framework_backend, framework_space
from segtune.runners.plan.objectives import check_metric
from segtune.runners.plan.resume import check_resume_options
from segtune.runners.plan.starting_point import given_weights, search_starting_points
from segtune.runners.request import TuneRequest
from segtune.search_spaces.conditional import conditional_space
from segtune.search_spaces.space import SearchSpace
from segtune.trainers.registry import dataset_readers, get_adapter

# A forced experiment snapshot after every checkpoint is what makes a killed search resumable.
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
# A reused trial process first waits for the stopped trial's framework to wind down (its data
# loaders, its logs); Ray's default of 2 s gives up on a busy machine and starts a new process.
os.environ.setdefault("TUNE_FUNCTION_THREAD_TIMEOUT_S", "30")


def launch(request: TuneRequest) -> int:
    """Run the search `request` asks for (a new one, or `--resume`); the exit status.

    Raises:
        ConfigError, SpaceError: bad input, found before anything is written (one line).
    """
    frameworks = _frameworks(request)
    storage = _writable_dir(request.output.storage, "--storage")
    name = request.output.name or f"{'-'.join(request.names)}-{time.strftime('%Y%m%d-%H%M%S')}"
    experiment_dir = storage / name
    if request.output.resume:
        return _resume(request, experiment_dir)
    if experiment_dir.exists():
        raise ConfigError(
            f"experiment {experiment_dir} already exists; continue it with --resume --name {name}, "
            f"or choose another --name"
        )
    preflight = _check(request, frameworks, name, storage)
    layouts = {layout.name: layout for f in frameworks for layout in f.adapter.data_layouts()}
    dataset = _prepare_data(request, tuple(layouts.values()))
    _start_ray(request.resources.address, request.output.verbosity)
    has_gpu = _cluster_has_gpu()
    # Pretrained weights are looked up (and fetched, once, into the framework's own cache) before any trial.
    starts = search_starting_points(
        request.frameworks, {f.name: f.adapter for f in frameworks}, has_gpu, request.study.config
    )
    experiment = plan_experiment(
        request,
        frameworks,
        preflight,
        dataset,
        has_gpu,
        experiment_dir,
        name,
        starts,
        warn=lambda text: print(f"segtune: warning: {text}"),
    )
    return _search(experiment, preflight, request.output.verbosity, experiment_dir)


def _frameworks(request: TuneRequest) -> tuple[Framework, ...]:
    """Each framework's backend and adapter (its library imported), the backends printed."""
    if request.all_frameworks and not request.several:
        print(f"segtune: --framework {ALL}: only {request.names[0]} is installed")
    backends = {f.name: framework_backend(f.name, f.backend, request.several) for f in request.frameworks}
    frameworks = tuple(
        Framework(f.name, backends[f.name], get_adapter(f.name, backends[f.name])) for f in request.frameworks
    )
    for wanted, framework in zip(request.frameworks, frameworks, strict=True):
        if framework.backend:
            print(
                f"segtune: {framework.name} backend: {framework.backend}"
                + (" (auto)" if wanted.backend == "auto" else "")
            )
    return frameworks


def _check(request: TuneRequest, frameworks: tuple[Framework, ...], name: str, storage: Path) -> Preflight:
    """What the user wrote, checked before anything starts: a typo costs seconds, not a Ray start."""
    adapters = {f.name: f.adapter for f in frameworks}
    metric, objectives = request.objective.metric, request.objective.objectives
    check_metric(metric, objectives, adapters)
    mode = request.objective.mode or default_mode(metric)
    options = adapter_options(dict(request.adapter_options), adapters)
    warm_sources = _check_study_options(request, name, mode, storage)
    config = request.study.config
    spaces = {
        f.name: framework_space(f.name, adapters[f.name], request.seed, space_file=f.space, config=config)
        for f in request.frameworks
        if f.space is not None or config is not None
    }
    if request.study.start_from is not None:
        read_params_file(request.study.start_from, request.names[0])
    for f in request.frameworks:
        weights = given_weights(f.weights)
        for model in (f.models or ("",)) if f.models or weights else ():
            adapters[f.name].resolve_model(model, weights)
    if request.resources.address is None and request.resources.gpus_per_trial:
        _check_local_gpus(request.resources.gpus_per_trial)
    return Preflight(mode, options, tuple(warm_sources), spaces)


def _search(experiment: Experiment, preflight: Preflight, output: str, experiment_dir: Path) -> int:
    """The planned search, warm-started when asked, run to its end; the summary's exit status."""
    from segtune.runners.search.tuner import build_tuner, ordered_first_points

    settings, space = experiment.settings, experiment.space
    searched = settings.is_multi or bool(space.searched)
    warm_start = None
    if preflight.warm_sources and searched:
        from segtune.runners.search.warm_start import load_warm_start

        warm_start = load_warm_start(
            list(preflight.warm_sources),
            space,
            settings.objective.mode,
            num_points=max(1, min(3, settings.budget.num_samples // 4)),
        )
        print(f"segtune: {warm_start.note}")
        if warm_start.warning:
            print(f"segtune: warning: {warm_start.warning}")
    first_points = [point for _, point in experiment.first]
    for line in plan_lines(
        experiment, output == "quiet", warm_start is not None, len(ordered_first_points(warm_start, first_points))
    ):
        print(line)
    experiment_dir.mkdir(parents=True)  # new (checked above); the study's SQLite file goes in it
    tuner = build_tuner(
        settings, space, experiment_dir, warm_start=warm_start, first_points=first_points, output=output
    )
    settings.save(experiment_dir)
    _print_study(settings, experiment_dir, searched)
    return _finish(tuner.fit(), settings, experiment_dir)


def _resume(request: TuneRequest, experiment_dir: Path) -> int:
    from ray import tune

    if not (experiment_dir / SETTINGS_FILE).exists() or not tune.Tuner.can_restore(str(experiment_dir)):
        raise ConfigError(
            f"nothing to resume at {experiment_dir}; check --name and --storage, or start it without --resume"
        )
    from segtune.runners.search.tuner import restore_tuner

    try:
        settings = RunSettings.load(experiment_dir)
    except ExperimentError:  # a record newer than this segtune: its one line names the fix
        raise
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise ConfigError(
            f"{experiment_dir / SETTINGS_FILE} cannot be read ({exc}); it was not written by this version "
            f"of runners/tune.py, start a new experiment"
        ) from None
    # The directory may have moved since it was made (a copy, another mount): trials write here now.
    settings = dataclasses.replace(settings, experiment_dir=str(experiment_dir))
    if set(settings.framework_names) != set(request.names):
        recorded = ",".join(settings.framework_names)
        raise ConfigError(f"{experiment_dir} is a {recorded} experiment; resume it with --framework {recorded}")
    output = request.output.verbosity
    if not settings.budget.recorded:  # recorded before segtune kept the budget (core/migrate.py): Ray's own restore
        check_resume_options(request, settings, legacy=True)
        _start_ray(request.resources.address, output)
        print(f"segtune: resuming {experiment_dir}")
        return _finish(restore_tuner(experiment_dir, settings, output).fit(), settings, experiment_dir)
    settings = check_resume_options(request, settings)
    from segtune.runners.search.tuner import build_tuner

    _start_ray(request.resources.address, output)
    space = conditional_space(settings.frameworks) if settings.is_multi else SearchSpace.from_dict(settings.space)
    budget = settings.budget
    print(
        f"segtune: resuming {experiment_dir}: {budget.num_samples} trials in all"
        + (f", time budget {budget.time_budget:g}s for this run" if budget.time_budget else "")
    )
    tuner = build_tuner(settings, space, experiment_dir, resume=True, output=output)
    settings.save(experiment_dir)
    _print_study(settings, experiment_dir, bool(SearchSpace.from_dict(settings.space).searched))
    return _finish(tuner.fit(), settings, experiment_dir)


def _check_study_options(request: TuneRequest, name: str, mode: str, storage: Path) -> list:
    """--study-storage and --warm-start, checked before anything is written; the warm-start sources."""
    study = request.study
    if study.storage:
        from segtune.runners.search.study import open_storage, study_exists

        if study_exists(open_storage(study.storage), name):
            raise ConfigError(
                f"--study-storage {study.storage} already holds a study named {name}; choose another --name"
            )
    if not study.warm_start:
        return []
    if study.config is not None:
        raise ConfigError("--warm-start seeds a search; --config trains one fixed configuration: leave one out")
    from segtune.runners.search.warm_start import find_sources

    return find_sources(list(study.warm_start), storage, request.names[0], request.objective.metric, mode)


def _print_study(settings: RunSettings, experiment_dir: Path, searched: bool) -> None:
    if searched:
        from segtune.runners.search.study import dashboard_command

        print(
            f"segtune: Optuna study {settings.study_name_at(experiment_dir)}; watch it live: "
            f"{dashboard_command(settings.study_url(experiment_dir))}"
        )


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


def _prepare_data(request: TuneRequest, layouts: tuple):
    """Validated and converted once, into every layout in `layouts` (the adapters' data_layouts())."""
    from segtune.cocodata.prepare import prepare_dataset

    started = time.perf_counter()
    data = request.data
    dataset = prepare_dataset(
        data.data,
        train_json=data.train_json,
        train_images=data.train_images,
        val_json=data.val_json,
        val_images=data.val_images,
        val_fraction=data.val_fraction,
        seed=request.seed,
        cache_dir=_writable_dir(request.output.cache_dir, "--cache-dir"),
        layouts=layouts,
        readers=dataset_readers(),
        log=lambda msg: print(f"segtune: {msg}"),
    )
    if request.output.verbosity != "quiet":
        print(
            f"segtune: data ready in {time.perf_counter() - started:.1f}s: {dataset.num_train_images} train / "
            f"{dataset.num_val_images} val images, {dataset.num_classes} classes ({dataset.name})"
        )
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
