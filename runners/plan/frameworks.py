"""Several frameworks in one search (`--framework yolo,maskrcnn` or `all`): the names, the
FRAMEWORK=VALUE options, and each framework's backend, default models and first trial.

A search over one framework is the one-entry case (runners/launch.py runs both). What differs
with several:
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

from pathlib import Path
from typing import Any

from segtune.core.choice import FRAMEWORK_KEY, param_key
from segtune.core.errors import ConfigError, SpaceError
from segtune.runners.plan.first_trials import default_point
from segtune.search_spaces.space import SearchSpace, default_space_path, load_space, load_yaml, parse_space, thaw
from segtune.trainers.base import TrainerAdapter, TrainingShape
from segtune.trainers.registry import BACKENDS, FRAMEWORKS, get_adapter, resolve_backend

ALL = "all"


def framework_names(text: str) -> list[str]:
    """The frameworks named by --framework ("yolo", "yolo,maskrcnn", "all"), checked and deduplicated."""
    names = [part.strip() for part in text.split(",") if part.strip()]
    if names == [ALL]:
        return [ALL]
    unknown = [n for n in names if n not in FRAMEWORKS]
    if unknown or not names:
        raise ConfigError(
            f"unknown framework {', '.join(unknown) or repr(text)}; choose one or more of "
            f"{', '.join(FRAMEWORKS)} (comma-separated), or {ALL}"
        )
    return list(dict.fromkeys(names))


def per_framework(values: list[str] | None, option: str, frameworks: list[str]) -> dict[str, str]:
    """FRAMEWORK=VALUE items of a per-framework option."""
    found: dict[str, str] = {}
    for item in values or []:
        framework, sep, value = item.partition("=")
        if not sep or not value:
            raise ConfigError(
                f"{option} {item!r}: with several frameworks write FRAMEWORK=VALUE (e.g. {option} {frameworks[0]}=...)"
            )
        if framework not in frameworks:
            raise ConfigError(
                f"{option} {item!r}: {framework!r} is not one of this search's frameworks ({', '.join(frameworks)})"
            )
        if framework in found:
            raise ConfigError(f"{option} names {framework} twice; give each framework once")
        found[framework] = value
    return found


def single_value(values: list[str] | None, option: str, framework: str) -> str | None:
    """The one value of a per-framework option for a search over one framework: plain, or
    FRAMEWORK=VALUE for that framework (as with several); None when not given."""
    values = values or []
    if len(values) > 1:
        raise ConfigError(f"{option} takes one value for one framework; got {len(values)}")
    value = values[0] if values else None
    named, sep, _ = (value or "").partition("=")
    if sep and named in FRAMEWORKS:
        value = per_framework(values, option, [framework])[framework]
    return value


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


def check_backend(backend: str, frameworks: list[str]) -> None:
    """With several frameworks --backend must belong to one of them (it applies to that one)."""
    if backend not in ("auto", "", None) and not any(backend in BACKENDS[f] for f in frameworks):
        raise ConfigError(
            f"--backend {backend} belongs to none of {', '.join(frameworks)}; leave it out or choose "
            f"one of: {', '.join(b for f in frameworks for b in BACKENDS[f])}"
        )


def framework_backend(framework: str, backend: str, several: bool) -> str:
    """The concrete backend of one framework; with several, a --backend of another framework is
    this one's "auto"."""
    return resolve_backend(framework, backend if not several or backend in BACKENDS[framework] else "auto")


def spaces_by_framework(paths: list[Path] | None, frameworks: list[str]) -> dict[str, Path]:
    """Each --space file of a search over several frameworks, under the framework the file names."""
    spaces: dict[str, Path] = {}
    for path in paths or []:
        space = load_space(path)
        if space.framework not in frameworks:
            raise SpaceError(
                f"{path} names framework {space.framework!r}; with several frameworks each --space "
                f"file says which one it is for (framework: {' or '.join(frameworks)})"
            )
        if space.framework in spaces:
            raise SpaceError(f"--space gives two files for {space.framework}; give one")
        spaces[space.framework] = path
    return spaces


def default_model(adapter: type[TrainerAdapter], has_gpu: bool) -> str:
    """The adapter's model for a search of its own (a smaller one without a GPU)."""
    return (adapter.default_model if has_gpu else adapter.default_model_cpu) or adapter.default_model


def default_models(adapter: type[TrainerAdapter], has_gpu: bool) -> tuple[str, ...]:
    """The model choices of a framework in a search over several: the adapter's, or its one model."""
    choices = adapter.model_choices if has_gpu else adapter.model_choices_cpu
    return choices or (default_model(adapter, has_gpu),)


def framework_first_point(
    framework: str, adapter: type[TrainerAdapter], space: SearchSpace, sampler: str, shape: TrainingShape
) -> dict[str, Any]:
    """One framework's first trial in a search over several: its defaults fitted into its space
    (runners/plan/first_trials.py), under the framework's keys; only the framework's choice for a
    random-search baseline."""
    point: dict[str, Any] = {FRAMEWORK_KEY: framework}
    if sampler == "tpe":
        defaults = default_point(space, adapter.default_params(space.searched, shape))
        point.update({param_key(framework, key): value for key, value in defaults.items()})
    return point


def adapter_options(given: dict[str, Any], adapters: dict[str, type[TrainerAdapter]]) -> dict[str, Any]:
    """Adapter options (--iters-per-epoch) as the trials get them: refused when the one framework's
    adapter does not take them; with several, taken when at least one does (the others ignore them)."""
    for name in given:
        if any(name in a.options for a in adapters.values()):
            continue
        flag = f"--{name.replace('_', '-')}"
        if len(adapters) == 1:
            (adapter,) = adapters.values()
            raise ConfigError(f"{flag} does not apply to {adapter.display_name()}; leave it out")
        raise ConfigError(f"{flag} applies to none of {', '.join(adapters)}; leave it out")
    return dict(given)


def framework_space(
    framework: str,
    adapter: type[TrainerAdapter],
    seed: int,
    *,
    space_file: Path | None = None,
    config: Path | None = None,
    cpu_only: bool = False,
) -> SearchSpace:
    """The space of `framework`'s trials, checked.

    Args:
        framework: the framework's name (a --space file naming another is refused).
        adapter: the framework's adapter; its seed key and parameter checks apply.
        seed: --seed, fixed under the adapter's seed key unless the space names that key.
        space_file: a --space file; None: search_spaces/<framework>(_cpu).yaml.
        config: a --config file: its fixed values are the space (one configuration, nothing searched).
        cpu_only: the default space is the _cpu variant (there is no GPU).

    Raises:
        SpaceError, ConfigError: one line naming the file and the fix.
    """
    if config is not None:
        space = _config_space(framework, config)
    else:
        path = space_file or default_space_path(framework, cpu_only=cpu_only)
        space = load_space(path)
        if space.framework and space.framework != framework:
            raise SpaceError(f"{path} is a {space.framework} search space; pass a {framework} one with --space")
    if adapter.seed_key not in space.keys:
        space = space.with_fixed({adapter.seed_key: seed})
    _check_space_keys(space, adapter)
    return space


def _config_space(framework: str, config: Path) -> SearchSpace:
    """The fixed values of a --config file (export_best.py's config.yaml, or a params mapping)."""
    data = load_yaml(config, "config")
    params = data.get("params", data) if isinstance(data, dict) else None
    if not isinstance(params, dict) or not params:
        raise SpaceError(f"{config}: a config is a mapping of parameter values (or a 'params' mapping)")
    if any(isinstance(v, dict) for v in params.values()):
        raise SpaceError(f"{config}: --config takes fixed values only; put ranges in a --space file")
    return parse_space(params, source=str(config), framework=framework)


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
