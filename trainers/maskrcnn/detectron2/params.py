"""Detectron2 parameters of a trial: the shared Mask R-CNN vocabulary plus any Detectron2 config key.

`merge` is `cfg.merge_from_list` with yacs' type checks turned into one-line ConfigErrors; sampled
numpy scalars are cast to Python first (yacs refuses them).
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Mapping
from typing import Any

from segtune.core.errors import ConfigError
from segtune.trainers.maskrcnn.params import PARAM_NAMES, to_python, validate_params

WHO = "maskrcnn (detectron2)"

# Keys the trial sets itself (datasets, budget, device, outputs): a search space may not touch them.
CONTROLLED = frozenset(
    {
        "OUTPUT_DIR",
        "VERSION",
        "MODEL.DEVICE",
        "MODEL.WEIGHTS",
        "MODEL.MASK_ON",
        "MODEL.KEYPOINT_ON",
        "MODEL.LOAD_PROPOSALS",
        "MODEL.ROI_HEADS.NUM_CLASSES",
        "MODEL.RETINANET.NUM_CLASSES",
        "MODEL.SEM_SEG_HEAD.NUM_CLASSES",
        "SOLVER.MAX_ITER",
        "SOLVER.CHECKPOINT_PERIOD",
        "SOLVER.REFERENCE_WORLD_SIZE",
        "TEST.EVAL_PERIOD",
        "TEST.EXPECTED_RESULTS",
        "TEST.DETECTIONS_PER_IMAGE",
        "DATALOADER.NUM_WORKERS",
    }
)
CONTROLLED_PREFIXES = ("DATASETS.", "TEST.AUG.")  # test-time augmentation is not used by predict_val
EXTENSION_KEYS = frozenset({"SOLVER.OPTIMIZER"})  # vocabulary keys that are not Detectron2 keys


def _controlled(key: str) -> bool:
    return key in CONTROLLED or key.startswith(CONTROLLED_PREFIXES)


def _leaf_keys(node, prefix: str = "") -> dict[str, Any]:
    from detectron2.config import CfgNode

    keys: dict[str, Any] = {}
    for key, value in node.items():
        if isinstance(value, CfgNode):
            keys.update(_leaf_keys(value, f"{prefix}{key}."))
        else:
            keys[f"{prefix}{key}"] = value
    return keys


@functools.lru_cache(maxsize=1)
def detectron2_keys() -> frozenset[str]:
    from detectron2.config import get_cfg

    return frozenset(_leaf_keys(get_cfg()))


@functools.lru_cache(maxsize=1)
def param_names() -> frozenset[str]:
    """The shared vocabulary plus every Detectron2 config key the trial does not set itself."""
    return PARAM_NAMES | frozenset(k for k in detectron2_keys() if not _controlled(k))


def _lookup(cfg, key: str) -> Any:
    node = cfg
    for part in key.split("."):
        node = node[part]
    return node


def _coerce(original: Any, value: Any) -> Any:
    """Make a sampled value pass yacs' strict type check where the meaning is unambiguous."""
    value = to_python(value)
    if isinstance(original, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(original, int) and not isinstance(original, bool) and isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(original, tuple) and isinstance(value, list):
        return tuple(value)
    return value


def merge(cfg, settings: Mapping[str, Any]) -> None:
    """cfg.merge_from_list with type checks; a bad key or value is a ConfigError."""
    for key, value in settings.items():
        try:
            value = _coerce(_lookup(cfg, key), value)
            cfg.merge_from_list([key, value])
        except (KeyError, AssertionError, ValueError, TypeError) as exc:
            raise ConfigError(f"{WHO}: parameter {key}={value!r} is not valid for Detectron2: {exc}") from None


def normalise_params(params: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(vocabulary params, other Detectron2 params), validated and cast to plain Python values."""
    unknown = sorted(set(params) - param_names())
    if unknown:
        problems = []
        for key in unknown:
            if _controlled(key):
                problems.append(f"{key!r} is set by segtune itself")
                continue
            close = difflib.get_close_matches(key, sorted(param_names()), n=3, cutoff=0.6)
            problems.append(f"{key!r}" + (f" (did you mean {', '.join(close)}?)" if close else ""))
        raise ConfigError(
            f"{WHO} has no parameter {'; '.join(problems)}; valid keys: the Mask R-CNN vocabulary "
            f"({', '.join(sorted(PARAM_NAMES))}) or any other Detectron2 config key"
        )
    given_vocab = {k: v for k, v in params.items() if k in PARAM_NAMES}
    validated = validate_params(given_vocab, who=WHO)
    vocab = {k: validated[k] for k in given_vocab}
    native = {k: to_python(v) for k, v in params.items() if k not in PARAM_NAMES}
    if native:
        from detectron2.config import get_cfg

        merge(get_cfg(), native)  # type-check against Detectron2's defaults
    return vocab, native
