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
from segtune.runners.plan.start_points import default_point
from segtune.search_spaces.space import SearchSpace, load_space
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
        raise ConfigError(f"--backend {backend} belongs to none of {', '.join(frameworks)}; leave it out or choose "
                          f"one of: {', '.join(b for f in frameworks for b in BACKENDS[f])}")


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
            raise SpaceError(f"{path} names framework {space.framework!r}; with several frameworks each --space "
                             f"file says which one it is for (framework: {' or '.join(frameworks)})")
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


def framework_first_point(framework: str, adapter: type[TrainerAdapter], space: SearchSpace, sampler: str,
                          shape: TrainingShape) -> dict[str, Any]:
    """One framework's first trial in a search over several: its defaults fitted into its space
    (runners/plan/start_points.py), under the framework's keys; only the framework's choice for a
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
