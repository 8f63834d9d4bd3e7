"""One framework's search space: a --space file, its default, or the fixed values of a --config.

Checked against the framework's adapter before anything starts (every key is the framework's,
every categorical choice a value it accepts), so a typo costs seconds, not a Ray start. The
adapter's seed key is fixed to --seed unless the space names it.
"""
from __future__ import annotations

from pathlib import Path

from segtune.core.errors import ConfigError, SpaceError
from segtune.search_spaces.space import SearchSpace, default_space_path, load_space, load_yaml, parse_space, thaw
from segtune.trainers.base import TrainerAdapter


def framework_space(framework: str, adapter: type[TrainerAdapter], seed: int, *, space_file: Path | None = None,
                    config: Path | None = None, cpu_only: bool = False) -> SearchSpace:
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
