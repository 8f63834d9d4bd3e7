"""The search-space file format, validated at load time like Optuna's distributions.

```yaml
framework: yolo
params:
  lr0: {type: float, low: 1.0e-4, high: 1.0e-1, log: true}
  optimizer: {type: categorical, choices: [SGD, AdamW]}
  batch: {type: int, low: 8, high: 32, step: 8}
  epochs_warmup: 3                  # a bare value (or {type: fixed, value: ...}) is not searched
```
Keys are the framework's own argument names. Every problem is a SpaceError naming the file,
the key and the fix.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
    distribution_to_json,
    json_to_distribution,
)

from segtune.core.errors import SpaceError

SPACES_DIR = Path(__file__).resolve().parent
_TYPES = ("float", "int", "categorical", "fixed")
_ALLOWED_FIELDS = {
    "float": {"type", "low", "high", "log", "step"},
    "int": {"type", "low", "high", "log", "step"},
    "categorical": {"type", "choices"},
    "fixed": {"type", "value"},
}


@dataclass(frozen=True)
class SearchSpace:
    source: str
    framework: str | None
    searched: dict[str, BaseDistribution]
    fixed: dict[str, Any]

    @property
    def keys(self) -> set[str]:
        return set(self.searched) | set(self.fixed)

    def with_fixed(self, values: Mapping[str, Any]) -> SearchSpace:
        """A copy where `values` are fixed (they win over searched ranges of the same key)."""
        searched = {k: d for k, d in self.searched.items() if k not in values}
        return SearchSpace(self.source, self.framework, searched, {**self.fixed, **values})

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the experiment keeps its space itself, not a path to a file that may change."""
        return {
            "source": self.source,
            "framework": self.framework,
            "searched": {k: json.loads(distribution_to_json(d)) for k, d in self.searched.items()},
            "fixed": {k: thaw(v) for k, v in self.fixed.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SearchSpace:
        searched = {}
        for key, spec in (data.get("searched") or {}).items():
            distribution = json_to_distribution(json.dumps(spec))
            if isinstance(distribution, CategoricalDistribution):  # JSON turned tuple choices into lists
                distribution = CategoricalDistribution([freeze(c) for c in distribution.choices])
            searched[key] = distribution
        return cls(str(data.get("source", "")), data.get("framework"), searched, dict(data.get("fixed") or {}))


def default_space_path(framework: str, cpu_only: bool = False, finetune: bool = False) -> Path:
    """The one rule for every framework: `search_spaces/<framework>[_finetune][_cpu].yaml`.

    `_finetune`: ranges for starting from pretrained weights (runners/plan/starting_point.py);
    `_cpu`: for CPU-only runs. A variant the framework does not ship falls back to the next most
    specific file (_finetune_cpu -> _finetune -> _cpu -> plain).
    """
    suffixes = (["_finetune_cpu"] if finetune and cpu_only else []) + (["_finetune"] if finetune else [])
    suffixes += (["_cpu"] if cpu_only else []) + [""]
    for suffix in suffixes:
        if (SPACES_DIR / f"{framework}{suffix}.yaml").exists():
            return SPACES_DIR / f"{framework}{suffix}.yaml"
    return SPACES_DIR / f"{framework}.yaml"


class _YamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader, with floats written without a dot (1e-5, 5E-05) read as floats, as
    JSON, Python and YAML 1.2 read them; YAML 1.1 makes them strings, so a learning rate of
    1e-5 in a config or space file would reach the framework as the text "1e-5"."""


_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def load_yaml(path: Path, what: str = "file") -> Any:
    """Plain YAML (safe: Python object tags are refused, never executed) with one-line errors."""
    path = Path(path)
    if not path.is_file():
        problem = "is a directory" if path.is_dir() else "does not exist"
        raise SpaceError(f"{what} {path} {problem}; give the path of a YAML file")
    try:
        return yaml.load(path.read_text(), Loader=_YamlLoader)  # noqa: S506 (a SafeLoader)
    except yaml.constructor.ConstructorError as exc:
        raise SpaceError(f"{path}: unsupported YAML tag ({exc.problem}); only plain YAML values are allowed") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise SpaceError(f"{path}:{where} invalid YAML ({getattr(exc, 'problem', exc)}); fix the syntax") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpaceError(f"{what} {path} cannot be read ({exc}); check its permissions") from None


def load_space(path: Path) -> SearchSpace:
    data = load_yaml(path, "search space")
    if not isinstance(data, dict) or not isinstance(data.get("params"), dict):
        raise SpaceError(f"{path}: a search space is a mapping with a 'params' mapping; see search_spaces/yolo.yaml")
    extra = set(data) - {"framework", "description", "params"}
    if extra:
        raise SpaceError(f"{path}: unknown top-level key(s) {sorted(extra)}; allowed: framework, description, params")
    return parse_space(data["params"], source=str(path), framework=data.get("framework"))


def parse_space(params: Mapping[str, Any], source: str = "<space>", framework: str | None = None) -> SearchSpace:
    if not params:
        raise SpaceError(f"{source}: 'params' is empty; list at least one parameter")
    searched: dict[str, BaseDistribution] = {}
    fixed: dict[str, Any] = {}
    for key, spec in params.items():
        if not isinstance(key, str) or not key:
            raise SpaceError(f"{source}: parameter names must be non-empty strings, got {key!r}")
        if isinstance(spec, dict) and "type" in spec:
            kind = spec["type"]
            if kind == "fixed":
                _check_fields(source, key, spec, "fixed")
                fixed[key] = spec.get("value")
            else:
                searched[key] = _distribution(source, key, spec)
        elif isinstance(spec, dict):
            raise SpaceError(f"{source}: {key}: a mapping needs 'type' (one of {', '.join(_TYPES)})")
        else:
            fixed[key] = spec
    return SearchSpace(source, framework, searched, fixed)


def _check_fields(source: str, key: str, spec: dict, kind: str) -> None:
    unknown = set(spec) - _ALLOWED_FIELDS[kind]
    if unknown:
        raise SpaceError(
            f"{source}: {key}: unknown field(s) {sorted(unknown)} for type {kind}; "
            f"allowed: {', '.join(sorted(_ALLOWED_FIELDS[kind]))}"
        )


def _number(source: str, key: str, spec: dict, field: str, cast: type) -> Any:
    if field not in spec:
        raise SpaceError(f"{source}: {key}: missing '{field}'")
    value = spec[field]
    # YAML 1.1 reads 1e-4 (no dot) as a string: accept it, it is what users write.
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise SpaceError(f"{source}: {key}: '{field}' must be a number, got {spec[field]!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SpaceError(f"{source}: {key}: '{field}' must be a number, got {value!r}")
    if cast is int and float(value) != int(value):
        raise SpaceError(f"{source}: {key}: '{field}' of an int parameter must be whole, got {value!r}")
    return cast(value)


def _distribution(source: str, key: str, spec: dict) -> BaseDistribution:
    kind = spec["type"]
    if kind not in _TYPES:
        raise SpaceError(f"{source}: {key}: unknown type {kind!r}; use one of {', '.join(_TYPES)}")
    _check_fields(source, key, spec, kind)
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise SpaceError(f"{source}: {key}: 'choices' must be a non-empty list")
        # Optuna stores choices as-is; lists (e.g. anchor sizes) become tuples to be hashable.
        return CategoricalDistribution([freeze(c) for c in choices])
    cast = float if kind == "float" else int
    low = _number(source, key, spec, "low", cast)
    high = _number(source, key, spec, "high", cast)
    log = spec.get("log", False)
    if not isinstance(log, bool):
        raise SpaceError(f"{source}: {key}: 'log' must be true or false")
    step = _number(source, key, spec, "step", cast) if spec.get("step") is not None else None
    if low > high:
        raise SpaceError(f"{source}: {key}: low ({low}) > high ({high}); swap them")
    if log and low <= 0:
        raise SpaceError(f"{source}: {key}: a log-scale range needs low > 0, got {low}")
    if log and step is not None:
        raise SpaceError(f"{source}: {key}: 'step' and 'log: true' cannot be combined; drop one")
    if step is not None and step <= 0:
        raise SpaceError(f"{source}: {key}: 'step' must be > 0, got {step}")
    try:
        if kind == "float":
            return FloatDistribution(low, high, log=log, step=step)
        return IntDistribution(low, high, log=log, step=step or 1)
    except ValueError as exc:  # Optuna's own checks, e.g. a step that does not divide the range
        raise SpaceError(f"{source}: {key}: {exc}") from None


def freeze(value: Any) -> Any:
    """Lists as tuples (hashable), as Optuna stores categorical choices; inverse of thaw."""
    if isinstance(value, list):
        return tuple(freeze(v) for v in value)
    if isinstance(value, dict):
        raise SpaceError("categorical choices cannot be mappings")
    return value


def thaw(value: Any) -> Any:
    """Inverse of the tuple freezing above, for values handed to a framework."""
    if isinstance(value, tuple):
        return [thaw(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars from samplers
        return value.item()
    return value
