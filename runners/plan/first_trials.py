"""The first trials of a search: the framework's own defaults, then a known-good configuration.

A search that starts from random points spends its first trials far from anything that trains;
the framework's defaults are what its authors tuned, and `--start-from` is what the user already
knows works (e.g. the config.yaml of an earlier search's export). Values are fitted into the
searched ranges; a default the range excludes (a categorical choice not offered) is left out, and
Optuna samples that key. Keys of a start file outside the search space are reported, not used.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from segtune.core.errors import ConfigError
from segtune.search_spaces.space import SearchSpace, freeze, load_yaml, thaw

LEFT_OUT = object()  # fit_into's answer for a value the distribution cannot take


def fit_into(distribution: BaseDistribution, value: Any) -> Any:
    """`value` as a point of `distribution`: numbers clipped into the range (and onto its step grid),
    a categorical value matched to its choice; `LEFT_OUT` when it cannot be one."""
    if isinstance(distribution, CategoricalDistribution):
        for choice in distribution.choices:
            if _same(choice, value):
                return choice
        return LEFT_OUT
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return LEFT_OUT
    low, high, step = distribution.low, distribution.high, distribution.step
    value = min(max(float(value), low), high)
    if step:
        value = min(low + round((value - low) / step) * step, high)
    if isinstance(distribution, IntDistribution):
        return int(round(value))
    assert isinstance(distribution, FloatDistribution)
    return float(value)


def _same(choice: Any, value: Any) -> bool:
    if isinstance(choice, bool) != isinstance(value, bool):
        return False  # True == 1 in Python, not in a search space
    if choice == (freeze(value) if isinstance(value, list) else value):
        return True
    if isinstance(choice, str) and not isinstance(value, str):  # JSON-string choices, e.g. anchor sizes
        try:
            return json.loads(choice) == thaw(value)
        except ValueError:
            return False
    return False


def default_point(space: SearchSpace, defaults: dict[str, Any]) -> dict[str, Any]:
    """The framework's defaults of the searched keys, fitted into the space."""
    point = {}
    for key, distribution in space.searched.items():
        if key in defaults:
            value = fit_into(distribution, defaults[key])
            if value is not LEFT_OUT:
                point[key] = value
    return point


def read_params_file(path: Path, framework: str) -> dict[str, Any]:
    """The parameter values of a config file (export_best.py's config.yaml, or a params mapping)."""
    data = load_yaml(path, "--start-from file")
    if isinstance(data, dict) and data.get("framework") not in (None, framework):
        raise ConfigError(f"--start-from {path} is a {data['framework']} config; this search is {framework}")
    params = data.get("params", data) if isinstance(data, dict) else None
    if not isinstance(params, dict) or not params or any(isinstance(v, dict) for v in params.values()):
        raise ConfigError(
            f"--start-from {path}: expected a mapping of parameter values (or a 'params' mapping), "
            f"e.g. the config.yaml written by analysis/export_best.py"
        )
    return params


def read_start_from(
    path: Path, space: SearchSpace, framework: str, seed_key: str, warn: Callable[[str], None]
) -> dict[str, Any]:
    """The searched keys of a config file as a point of `space`; the other keys are reported."""
    params = read_params_file(path, framework)
    point = {}
    for key, value in params.items():
        if key in space.searched:
            fitted = fit_into(space.searched[key], value)
            if fitted is LEFT_OUT:
                warn(f"--start-from: {key}={value!r} is not a choice of the search space; Optuna samples {key}")
            else:
                if not _same(fitted, value):
                    warn(f"--start-from: {key}={value!r} is outside the searched range; starting from {fitted!r}")
                point[key] = fitted
        elif key == seed_key:
            continue  # seeds are the search's own
        elif key in space.fixed:
            if thaw(space.fixed[key]) != thaw(value):
                warn(
                    f"--start-from: {key} is fixed to {thaw(space.fixed[key])!r} in the search space; "
                    f"its {value!r} is not used"
                )
        else:
            warn(f"--start-from: {key} is not in the search space; not used")
    if not point:
        raise ConfigError(
            f"--start-from {path} sets none of the searched keys ({', '.join(sorted(space.searched))}); "
            f"pass a config of this search space"
        )
    return point


def start_points(
    space: SearchSpace,
    defaults: dict[str, Any],
    start_from: Path | None,
    framework: str,
    seed_key: str,
    warn: Callable[[str], None],
) -> list[tuple[str, dict[str, Any]]]:
    """The search's first trials as (what it is, point): the defaults (when the framework has any for
    the searched keys), then --start-from; the same point is not proposed twice."""
    candidates = [("the framework's defaults", default_point(space, defaults))]
    if start_from is not None:
        candidates.append((f"--start-from {start_from}", read_start_from(start_from, space, framework, seed_key, warn)))
    points: list[tuple[str, dict[str, Any]]] = []
    for label, point in candidates:
        if point and point not in [p for _, p in points]:
            points.append((label, point))
    return points
