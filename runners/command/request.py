"""`segtune tune ARGS` parsed and checked ONCE into the frozen request (runners/request.py).

Everything below the command line (runners/launch.py, runners/plan/, ...) reads the `TuneRequest`
and never changes it. The argparse Namespace stays in this package.

Example:
    >>> request = parse_request(["--framework", "yolo", "--num-samples", "4"])
    >>> request.names, request.budget.num_samples, request.output.verbosity
    (('yolo',), 4, 'default')
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import replace
from pathlib import Path

from segtune.core.errors import ConfigError
from segtune.core.record import absolute_study_url
from segtune.runners.command.parser import ADAPTER_OPTIONS, build_parser, given_options
from segtune.runners.plan.frameworks import (
    ALL,
    check_backend,
    framework_names,
    per_framework,
    resolve_frameworks,
    single_value,
    spaces_by_framework,
)
from segtune.runners.plan.objectives import chosen_objectives
from segtune.runners.plan.starting_point import FROM_SCRATCH
from segtune.runners.request import (
    BudgetRequest,
    ConfirmRequest,
    DataRequest,
    FrameworkRequest,
    ObjectiveRequest,
    OutputRequest,
    ResourceRequest,
    StudyRequest,
    TuneRequest,
)
from segtune.search_spaces.space import load_yaml

_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
# Options that describe one framework's experiment and have no meaning for several at once.
_SINGLE_ONLY = {
    "config": "--config trains one configuration of one framework",
    "warm_start": "--warm-start reuses an experiment of one framework",
    "start_from": "--start-from is a configuration of one framework",
}


def parse_request(argv: list[str] | None = None, prog: str = "tune.py") -> TuneRequest:
    """`argv` (default sys.argv[1:]) as a checked, frozen request.

    Raises:
        SystemExit: status 2, for what argparse refuses (one line on stderr).
        ConfigError: for a value that cannot work together with the others (one line naming the fix).
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    parser.prog = prog
    args = parser.parse_args(argv)
    given = frozenset(given_options(argv))
    frameworks = _frameworks(args)
    metric, mode, objectives = chosen_objectives(
        args.objective, args.metric, args.mode, given, warm_start=bool(args.warm_start), confirm_top=args.confirm_top
    )
    _check_values(args)
    if len(frameworks) > 1 and not args.resume:  # a resumed search keeps its spaces (--space is refused)
        frameworks = _with_space_files(frameworks, args.space)
    if args.config is not None:
        frameworks = (_with_config_defaults(frameworks[0], args.config),)
    return TuneRequest(
        frameworks=frameworks,
        data=DataRequest(
            data=args.data,
            train_json=args.train_json,
            train_images=args.train_images,
            val_json=args.val_json,
            val_images=args.val_images,
            val_fraction=args.val_fraction,
        ),
        objective=ObjectiveRequest(metric, mode, objectives),
        budget=BudgetRequest(
            num_samples=args.num_samples,
            max_epochs=args.max_epochs,
            grace_period=args.grace_period,
            reduction_factor=args.reduction_factor,
            sampler=args.sampler,
            scheduler=args.scheduler,
            budget_epochs=args.budget_epochs,
            time_budget=args.time_budget,
            max_failures=args.max_failures,
        ),
        confirm=ConfirmRequest(top=args.confirm_top, seeds=args.confirm_seeds),
        study=StudyRequest(
            storage=absolute_study_url(args.study_storage) if args.study_storage else None,
            warm_start=tuple(args.warm_start or ()),
            start_from=args.start_from,
            config=args.config,
        ),
        resources=ResourceRequest(
            gpus_per_trial=args.gpus_per_trial,
            cpus_per_trial=args.cpus_per_trial,
            workers=args.workers,
            address=args.address,
        ),
        output=OutputRequest(
            name=args.name,
            storage=args.storage,
            resume=args.resume,
            verbosity="quiet" if args.quiet else "verbose" if args.verbose else "default",
            cache_dir=args.cache_dir,
        ),
        seed=args.seed,
        adapter_options=tuple(
            (name, getattr(args, name)) for name in ADAPTER_OPTIONS if getattr(args, name) is not None
        ),
        given=given,
        all_frameworks=framework_names(args.framework) == [ALL],
    )


def _frameworks(args: argparse.Namespace) -> tuple[FrameworkRequest, ...]:
    """One entry per framework of --framework (`all`: those installed), with its --model, --weights
    and --space. One framework takes plain values (or FRAMEWORK=VALUE for it); several, FRAMEWORK=VALUE."""
    named = framework_names(args.framework)
    if named != [ALL] and len(named) == 1:
        return (_one_framework(args, named[0]),)
    names = resolve_frameworks(named)
    if len(names) == 1:  # `all` with one framework installed: an ordinary search
        return (_one_framework(args, names[0]),)
    for option, why in _SINGLE_ONLY.items():
        if getattr(args, option):
            raise ConfigError(f"{why}; leave --{option.replace('_', '-')} out of a search over several frameworks")
    check_backend(args.backend, names)
    models = per_framework(args.model, "--model", names)
    weights = per_framework(args.weights, "--weights", names)
    return tuple(
        FrameworkRequest(
            name, args.backend, tuple(models[name].split(",")) if name in models else (), weights.get(name)
        )
        for name in names
    )


def _one_framework(args: argparse.Namespace, name: str) -> FrameworkRequest:
    model = single_value(args.model, "--model", name) or ""
    if "," in model:
        raise ConfigError(f"--model {model!r}: model choices are for a search over several frameworks; give one model")
    if args.space and len(args.space) > 1:
        raise ConfigError(f"--space takes one file for one framework; got {len(args.space)}")
    weights = single_value(args.weights, "--weights", name)
    space = args.space[0] if args.space else None
    return FrameworkRequest(name, args.backend, (model,) if model else (), weights, space)


def _with_space_files(
    frameworks: tuple[FrameworkRequest, ...], paths: list[Path] | None
) -> tuple[FrameworkRequest, ...]:
    """Each --space file given to the framework it names (with several frameworks a file says which)."""
    spaces = spaces_by_framework(paths, [f.name for f in frameworks])
    return tuple(replace(f, space=spaces.get(f.name)) for f in frameworks)


def _with_config_defaults(framework: FrameworkRequest, config_path: Path) -> FrameworkRequest:
    """An exported config names its backend, model and weights: used unless the command line says
    otherwise, so that it trains the same model again."""
    config = load_yaml(config_path, "config")
    if not isinstance(config, dict):
        return framework  # the space loader says what a config must be
    named = config.get("framework")
    if named and named != framework.name:
        raise ConfigError(f"{config_path} is a {named} config; run it with --framework {named}")
    return replace(
        framework,
        backend=config["backend"] if framework.backend == "auto" and config.get("backend") else framework.backend,
        models=framework.models or ((str(config["model"]),) if config.get("model") else ()),
        weights=framework.weights if framework.weights is not None else _config_weights(config),
    )


def _config_weights(config: dict) -> str | None:
    """The starting weights an exported config records; `weights: null` means it was trained from
    scratch, so it trains from scratch again (the default would fine-tune)."""
    if config.get("weights"):
        return str(config["weights"])
    return FROM_SCRATCH if "weights" in config else None


def _check_values(args: argparse.Namespace) -> None:
    """Checks that need no Ray and no data; each failure is one line naming the fix."""
    if args.name is not None and (not _NAME_PATTERN.match(args.name) or ".." in args.name):
        raise ConfigError(
            f"--name {args.name!r} must be a plain name (letters, digits, '.', '_', '-'; no path separators or '..')"
        )
    if args.resume and not args.name:
        raise ConfigError("--resume needs --name of the experiment to continue")
    for flag in ("num_samples", "max_epochs", "grace_period", "iters_per_epoch", "budget_epochs"):
        value = getattr(args, flag)
        if value is not None and value <= 0:
            raise ConfigError(f"--{flag.replace('_', '-')} must be a positive whole number, got {value}")
    if args.max_epochs is not None and args.grace_period is not None and args.grace_period > args.max_epochs:
        raise ConfigError(
            f"--grace-period ({args.grace_period}) is longer than --max-epochs ({args.max_epochs}); lower it"
        )
    if args.confirm_top is not None and args.confirm_top < 0:
        raise ConfigError(f"--confirm-top must be >= 0 (0: no confirmation), got {args.confirm_top}")
    if args.confirm_seeds < 1:
        raise ConfigError(
            f"--confirm-seeds must be >= 1 (--confirm-top 0 skips confirmation), got {args.confirm_seeds}"
        )
    if args.config is not None and args.start_from is not None:
        raise ConfigError("--config trains one fixed configuration; --start-from is for searches, leave one out")
    if args.scheduler == "none" and args.grace_period is not None:
        raise ConfigError("--grace-period is ASHA's; leave it out with --scheduler none")
    if args.reduction_factor <= 1:
        raise ConfigError(f"--reduction-factor must be > 1, got {args.reduction_factor}")
    if args.time_budget is not None and args.time_budget <= 0:
        raise ConfigError(f"--time-budget must be > 0 seconds, got {args.time_budget}")
    if not 0 < args.val_fraction < 1:
        raise ConfigError(f"--val-fraction must be between 0 and 1, got {args.val_fraction}")
    if args.gpus_per_trial is not None and args.gpus_per_trial < 0:
        raise ConfigError(f"--gpus-per-trial must be >= 0, got {args.gpus_per_trial}")
    if args.cpus_per_trial is not None and args.cpus_per_trial <= 0:
        raise ConfigError(f"--cpus-per-trial must be > 0, got {args.cpus_per_trial}")
    if args.workers is not None and args.workers < 0:
        raise ConfigError(f"--workers must be >= 0, got {args.workers}")
    if args.max_failures < 0:
        raise ConfigError(f"--max-failures must be >= 0, got {args.max_failures}")
    if args.config is not None and args.space is not None:
        raise ConfigError("--config trains one fixed configuration; leave out --space")
    if args.data is not None and (args.train_json or args.train_images):
        raise ConfigError("give either --data or --train-json/--train-images, not both")
    if bool(args.train_json) != bool(args.train_images):
        raise ConfigError("--train-json and --train-images go together")
    if bool(args.val_json) != bool(args.val_images):
        raise ConfigError("--val-json and --val-images go together")
    if args.val_json and not args.train_json:
        raise ConfigError("--val-json needs --train-json/--train-images too")
