"""The Mask R-CNN hyperparameter vocabulary shared by every Mask R-CNN backend.

Keys are Detectron2's own config keys (so a Detectron2 user reads them as-is), plus two extensions:
`SOLVER.OPTIMIZER` ("SGD" | "AdamW"; Detectron2's `build_optimizer` only builds SGD) and `SEED`.
Defaults are Detectron2's (`detectron2/config/defaults.py`), with two translations:

* `SOLVER.STEPS` are FRACTIONS of the trial's total iteration budget (max_epochs x iterations per
  epoch), because the budget is not known when the search space is written. Detectron2's default
  (30000,) of MAX_ITER 40000 becomes (0.75,). `steps_in_iterations` converts them.
* `MODEL.ANCHOR_GENERATOR.SIZES` is always normalised to one list per FPN level (5 levels,
  P2..P6). A single inner list is broadcast to every level, as Detectron2 does.

Semantics both backends share (documented here so that they stay the same):
* the lr schedule is linear warmup from `BASE_LR * WARMUP_FACTOR` to `BASE_LR` over `WARMUP_ITERS`
  iterations, multiplied by `GAMMA ** (number of steps <= iteration)` (`lr_multiplier`);
* weight decay is not applied to normalisation layers (Detectron2's WEIGHT_DECAY_NORM = 0);
* `SOLVER.MOMENTUM` applies to SGD only; AdamW uses betas (0.9, 0.999);
* gradient clipping is per parameter, as in Detectron2 (CLIP_TYPE "value": each element clipped to
  +-CLIP_VALUE; "norm": each parameter's gradient norm clipped to CLIP_VALUE with NORM_TYPE);
* `SOLVER.AMP.ENABLED` only takes effect on CUDA.

This module imports no framework: the Detectron2 backend and the torchvision backend both use it.
"""

from __future__ import annotations

import bisect
import json
import math
import numbers
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from segtune.cocodata.results import list_images
from segtune.core.errors import ConfigError
from segtune.trainers.base import TrialContext

FPN_LEVELS = 5  # P2..P6: anchor sizes need one list per level


class _Invalid(Exception):
    """Raised by a converter: the value does not have the expected type or range."""


@dataclass(frozen=True)
class ParamSpec:
    name: str
    expected: str  # human-readable type and range, used in error messages
    default: Any
    convert: Callable[[Any], Any]  # raises _Invalid, returns the normalised Python value
    help: str = ""


# ---- converters ---------------------------------------------------------------------------------
def to_python(value: Any) -> Any:
    """Numpy scalars/arrays (what Optuna and Ray hand out) -> plain Python values, recursively."""
    if hasattr(value, "tolist") and type(value).__module__.split(".")[0] == "numpy":
        return value.tolist()
    if isinstance(value, Mapping):
        return {k: to_python(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_python(v) for v in value]
    return value


def _float(
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
    finite: bool = True,
) -> Callable[[Any], float]:
    def convert(value: Any) -> float:
        if isinstance(value, bool):
            raise _Invalid
        if isinstance(value, str):  # PyYAML reads 1e-3 (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                raise _Invalid from None
        if not isinstance(value, numbers.Real):
            raise _Invalid
        value = float(value)
        if math.isnan(value) or (finite and math.isinf(value)):
            raise _Invalid
        if low is not None and (value < low or (low_open and value == low)):
            raise _Invalid
        if high is not None and (value > high or (high_open and value == high)):
            raise _Invalid
        return value

    return convert


def _int(low: int | None = None, high: int | None = None) -> Callable[[Any], int]:
    def convert(value: Any) -> int:
        if isinstance(value, bool):
            raise _Invalid
        if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral):
            if not math.isfinite(value) or value != int(value):
                raise _Invalid
        elif not isinstance(value, numbers.Integral):
            raise _Invalid
        value = int(value)
        if (low is not None and value < low) or (high is not None and value > high):
            raise _Invalid
        return value

    return convert


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise _Invalid


def _choice(*choices: str) -> Callable[[Any], str]:
    by_lower = {c.lower(): c for c in choices}

    def convert(value: Any) -> str:
        if not isinstance(value, str) or value.lower() not in by_lower:
            raise _Invalid
        return by_lower[value.lower()]

    return convert


def _sequence(value: Any) -> list[Any]:
    """A list, a tuple, or a JSON string of one (categorical search choices must be strings)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise _Invalid from None
    if isinstance(value, (list, tuple)):
        return list(value)
    raise _Invalid


def _steps(value: Any) -> list[float]:
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        value = [value]
    fractions = [_float(0.0, 1.0, low_open=True, high_open=True)(v) for v in _sequence(value)]
    if fractions != sorted(fractions):
        raise _Invalid
    return fractions


def _sizes(value: Any) -> list[int]:
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = [value]
    sizes = [_int(1)(v) for v in _sequence(value)]
    if not sizes:
        raise _Invalid
    return sizes


def _anchor_sizes(value: Any) -> list[list[float]]:
    levels = _sequence(value)
    if not levels or not all(isinstance(level, (list, tuple)) for level in levels):
        raise _Invalid
    sizes = [[_float(0.0, low_open=True)(s) for s in level] for level in levels]
    sizes = [[int(s) if s.is_integer() else s for s in level] for level in sizes]
    if any(not level for level in sizes) or len({len(level) for level in sizes}) != 1:
        raise _Invalid
    if len(sizes) == 1:
        sizes = sizes * FPN_LEVELS
    if len(sizes) != FPN_LEVELS:
        raise _Invalid
    return sizes


# ---- the vocabulary -----------------------------------------------------------------------------
_SPECS: tuple[ParamSpec, ...] = (
    ParamSpec("SOLVER.BASE_LR", "a float > 0", 0.001, _float(0.0, low_open=True), "base learning rate"),
    ParamSpec("SOLVER.IMS_PER_BATCH", "an int >= 1", 16, _int(1), "images per batch (all devices)"),
    ParamSpec("SOLVER.WEIGHT_DECAY", "a float >= 0", 0.0001, _float(0.0), "L2 weight decay (not on norm layers)"),
    ParamSpec("SOLVER.MOMENTUM", "a float in [0, 1)", 0.9, _float(0.0, 1.0, high_open=True), "SGD momentum"),
    ParamSpec("SOLVER.OPTIMIZER", "one of 'SGD', 'AdamW'", "SGD", _choice("SGD", "AdamW"), "optimizer"),
    ParamSpec("SOLVER.WARMUP_ITERS", "an int >= 0", 1000, _int(0), "linear warmup iterations"),
    ParamSpec("SOLVER.WARMUP_FACTOR", "a float in [0, 1]", 0.001, _float(0.0, 1.0), "lr factor at iteration 0"),
    ParamSpec(
        "SOLVER.STEPS",
        "a list of ascending fractions in (0, 1), e.g. [0.7, 0.9]",
        [0.75],
        _steps,
        "lr decay points as fractions of the total iteration budget",
    ),
    ParamSpec("SOLVER.GAMMA", "a float in (0, 1]", 0.1, _float(0.0, 1.0, low_open=True), "lr factor at each step"),
    ParamSpec("SOLVER.CLIP_GRADIENTS.ENABLED", "a bool", False, _bool, "clip gradients"),
    ParamSpec(
        "SOLVER.CLIP_GRADIENTS.CLIP_TYPE",
        "one of 'value', 'norm'",
        "value",
        _choice("value", "norm"),
        "per-parameter clipping by element value or by gradient norm",
    ),
    ParamSpec("SOLVER.CLIP_GRADIENTS.CLIP_VALUE", "a float > 0", 1.0, _float(0.0, low_open=True), "clip threshold"),
    ParamSpec(
        "SOLVER.CLIP_GRADIENTS.NORM_TYPE",
        "a float > 0 (inf allowed)",
        2.0,
        _float(0.0, low_open=True, finite=False),
        "p of the p-norm for CLIP_TYPE 'norm'",
    ),
    ParamSpec("SOLVER.AMP.ENABLED", "a bool", False, _bool, "mixed precision (CUDA only)"),
    ParamSpec("MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", "an int >= 1", 512, _int(1), "RoIs sampled per image"),
    ParamSpec(
        "MODEL.BACKBONE.FREEZE_AT",
        "an int in [0, 5]",
        2,
        _int(0, 5),
        "0: nothing frozen, 1: stem, 2: stem + res2, ... (only with pretrained weights)",
    ),
    ParamSpec(
        "MODEL.ANCHOR_GENERATOR.SIZES",
        f"a list of {FPN_LEVELS} lists (one per FPN level) of equally many sizes > 0, "
        "e.g. [[32], [64], [128], [256], [512]]",
        [[32], [64], [128], [256], [512]],
        _anchor_sizes,
        "anchor sizes in pixels per FPN level",
    ),
    ParamSpec(
        "INPUT.MIN_SIZE_TRAIN",
        "an int >= 1 or a list of them",
        [800],
        _sizes,
        "shorter side in training; one is picked at random per image",
    ),
    ParamSpec("INPUT.MAX_SIZE_TRAIN", "an int >= 1", 1333, _int(1), "longer-side cap in training"),
    ParamSpec("INPUT.MIN_SIZE_TEST", "an int >= 1", 800, _int(1), "shorter side at test time"),
    ParamSpec("INPUT.MAX_SIZE_TEST", "an int >= 1", 1333, _int(1), "longer-side cap at test time"),
    ParamSpec("SEED", "an int >= 0", 0, _int(0), "seed of weights init, data order and augmentation"),
)
PARAMS: dict[str, ParamSpec] = {spec.name: spec for spec in _SPECS}
PARAM_NAMES: frozenset[str] = frozenset(PARAMS)


def defaults() -> dict[str, Any]:
    """Every key with its (Detectron2) default, as fresh objects."""
    return {name: json.loads(json.dumps(spec.default)) for name, spec in PARAMS.items()}


def default_values(keys: Iterable[str]) -> dict[str, Any]:
    """The defaults of those `keys` the vocabulary has (for a search's first trial)."""
    values = defaults()
    return {k: values[k] for k in keys if k in values}


def validate_params(params: Mapping[str, Any], *, who: str = "maskrcnn") -> dict[str, Any]:
    """Check, normalise and complete a params dict; raise ConfigError on the first problem.

    Returns plain Python values (numpy scalars cast), lists normalised (see the module doc), and
    every missing key filled with its default.
    """
    unknown = sorted(set(params) - PARAM_NAMES)
    if unknown:
        raise ConfigError(
            f"{who} has no parameter {', '.join(map(repr, unknown))}; valid keys: {', '.join(sorted(PARAM_NAMES))}"
        )
    result = defaults()
    for name, raw in params.items():
        spec = PARAMS[name]
        value = to_python(raw)
        try:
            result[name] = spec.convert(value)
        except (_Invalid, TypeError, ValueError, OverflowError):
            raise ConfigError(
                f"{who} parameter {name} must be {spec.expected}; got {value!r} ({type(raw).__name__})"
            ) from None
    return result


def steps_in_iterations(fractions: Sequence[float], total_iters: int) -> list[int]:
    """SOLVER.STEPS fractions -> iteration numbers (rounded) of a budget of `total_iters`."""
    return [int(round(float(f) * total_iters)) for f in fractions]


def lr_multiplier(
    iteration: int, *, warmup_iters: int, warmup_factor: float, steps: Sequence[int], gamma: float
) -> float:
    """Detectron2's WarmupMultiStepLR (linear warmup) factor for 0-based `iteration`."""
    factor = gamma ** bisect.bisect_right(list(steps), iteration)
    if iteration < warmup_iters:
        alpha = iteration / warmup_iters
        factor *= warmup_factor * (1.0 - alpha) + alpha
    return factor


def iters_per_epoch(context: TrialContext, ims_per_batch: int) -> int:
    """Iterations of one reported "epoch": the `--iters-per-epoch` option, else one pass over the
    train set (ceil(train images / IMS_PER_BATCH)). Both backends and their native configs use this."""
    if context.options.get("iters_per_epoch"):
        return int(context.options["iters_per_epoch"])
    dataset = context.dataset
    n_train = dataset.num_train_images or len(list_images(dataset.train_json, dataset.train_images))
    return max(1, math.ceil(n_train / ims_per_batch))
