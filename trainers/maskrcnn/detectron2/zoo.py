"""Detectron2 models: the model zoo's configs found inside the installed package, local config
files, and the small built-in model for CPUs.

Nothing here imports `detectron2.model_zoo`: that module imports `pkg_resources`, which
setuptools >= 81 no longer ships. Model-zoo configs are found as files inside the installed
package (`detectron2/model_zoo/configs`, which detectron2's setup.py fills for normal installs and
symlinks for editable ones), and the zoo's weight URLs are read from `model_zoo.py` as text.
"""

from __future__ import annotations

import ast
import difflib
import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segtune.core.errors import ConfigError
from segtune.trainers.maskrcnn.detectron2.params import WHO, merge

SMALL_MODEL = "segtune/mask_rcnn_R_18_FPN_small"
URL_PREFIX = "https://dl.fbaipublicfiles.com/detectron2/"  # what "detectron2://" stands for

# A small Mask R-CNN that trains from scratch on a CPU: Base-RCNN-FPN's layout with a ResNet-18
# trunk, trainable BatchNorm (FrozenBN diverges without pretrained weights), a 128-channel FPN,
# narrow heads, few proposals and ~96 px images. The same shape as torchvision's small model.
_SMALL_SETTINGS: dict[str, Any] = {
    "MODEL.META_ARCHITECTURE": "GeneralizedRCNN",
    "MODEL.MASK_ON": True,
    "MODEL.WEIGHTS": "",
    "MODEL.BACKBONE.NAME": "build_resnet_fpn_backbone",
    "MODEL.BACKBONE.FREEZE_AT": 0,
    "MODEL.RESNETS.DEPTH": 18,
    "MODEL.RESNETS.RES2_OUT_CHANNELS": 64,
    "MODEL.RESNETS.NORM": "BN",
    "MODEL.RESNETS.OUT_FEATURES": ["res2", "res3", "res4", "res5"],
    "MODEL.FPN.IN_FEATURES": ["res2", "res3", "res4", "res5"],
    "MODEL.FPN.OUT_CHANNELS": 128,
    "MODEL.ANCHOR_GENERATOR.SIZES": [[16], [32], [64], [128], [256]],
    "MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS": [[0.5, 1.0, 2.0]],
    "MODEL.RPN.IN_FEATURES": ["p2", "p3", "p4", "p5", "p6"],
    "MODEL.RPN.PRE_NMS_TOPK_TRAIN": 200,
    "MODEL.RPN.PRE_NMS_TOPK_TEST": 200,
    "MODEL.RPN.POST_NMS_TOPK_TRAIN": 100,
    "MODEL.RPN.POST_NMS_TOPK_TEST": 100,
    "MODEL.ROI_HEADS.NAME": "StandardROIHeads",
    "MODEL.ROI_HEADS.IN_FEATURES": ["p2", "p3", "p4", "p5"],
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE": 64,
    "MODEL.ROI_BOX_HEAD.NAME": "FastRCNNConvFCHead",
    "MODEL.ROI_BOX_HEAD.NUM_FC": 2,
    "MODEL.ROI_BOX_HEAD.FC_DIM": 512,
    "MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION": 7,
    "MODEL.ROI_MASK_HEAD.NAME": "MaskRCNNConvUpsampleHead",
    "MODEL.ROI_MASK_HEAD.NUM_CONV": 4,
    "MODEL.ROI_MASK_HEAD.CONV_DIM": 64,
    "MODEL.ROI_MASK_HEAD.POOLER_RESOLUTION": 14,
    "INPUT.MIN_SIZE_TRAIN": [96],
    "INPUT.MAX_SIZE_TRAIN": 160,
    "INPUT.MIN_SIZE_TEST": 96,
    "INPUT.MAX_SIZE_TEST": 160,
    "SOLVER.IMS_PER_BATCH": 4,
    "SOLVER.BASE_LR": 0.01,
    "SOLVER.WARMUP_ITERS": 100,
}
BUILTIN_MODELS: dict[str, dict[str, Any]] = {SMALL_MODEL: _SMALL_SETTINGS}


def package_dir() -> Path | None:
    """The installed detectron2 package directory, found without importing it."""
    spec = importlib.util.find_spec("detectron2")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def zoo_dirs() -> list[Path]:
    """Directories that may hold the zoo configs, most likely first (they need not exist)."""
    pkg = package_dir()
    if pkg is None:
        return []
    dirs = [pkg / "model_zoo" / "configs"]
    source_configs = pkg.parent / "configs"  # a source checkout (editable install without symlink)
    if (source_configs / "Base-RCNN-FPN.yaml").is_file():
        dirs.append(source_configs)
    return dirs


def zoo_names() -> list[str]:
    names: set[str] = set()
    for d in zoo_dirs():
        if d.is_dir():
            names.update(p.relative_to(d).as_posix() for p in d.rglob("*.yaml"))
    return sorted(names)


@functools.lru_cache(maxsize=1)
def zoo_weight_urls() -> dict[str, str]:
    """{zoo config name without .yaml: URL of its trained weights}, read from model_zoo.py as text."""
    pkg = package_dir()
    source = pkg / "model_zoo" / "model_zoo.py" if pkg else None
    if source is None or not source.is_file():
        return {}
    values: dict[str, Any] = {}
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.ClassDef) and node.name == "_ModelZooUrls":
            for stmt in node.body:
                if isinstance(stmt, ast.Assign) and isinstance(stmt.targets[0], ast.Name):
                    try:
                        values[stmt.targets[0].id] = ast.literal_eval(stmt.value)
                    except ValueError:
                        continue
    prefix = values.get("S3_PREFIX", URL_PREFIX)
    suffixes = values.get("CONFIG_PATH_TO_URL_SUFFIX", {})
    return {name: f"{prefix}{name}/{suffix}" for name, suffix in suffixes.items()}


@dataclass(frozen=True)
class ModelConfig:
    name: str  # as the user wrote it (or the default)
    path: Path | None  # the YAML file; None for a config built in code (BUILTIN_MODELS)


def resolve_model(model: str) -> ModelConfig:
    """A builtin name, a local YAML file or a model-zoo config name -> where its config is."""
    model = model or SMALL_MODEL
    builtin = model[:-5] if model.endswith(".yaml") else model
    if builtin in BUILTIN_MODELS:
        return ModelConfig(builtin, None)
    if model.endswith(".py"):
        raise ConfigError(
            f"{WHO}: {model} is a LazyConfig (.py) config, which this backend does not support; "
            "use a YAML config such as COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x.yaml"
        )
    local = Path(model).expanduser()
    if local.is_file():
        return ModelConfig(model, local.resolve())
    name = model.removeprefix("configs/")
    name = name if name.endswith((".yaml", ".yml")) else name + ".yaml"
    for d in zoo_dirs():
        if (d / name).is_file():
            return ModelConfig(model, (d / name).resolve())
    dirs = [str(d) for d in zoo_dirs()] or ["no detectron2 package found"]
    close = difflib.get_close_matches(name, zoo_names() + list(BUILTIN_MODELS), n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    raise ConfigError(
        f"{WHO}: model config {model!r} not found: no file {local.resolve()} and not in the model zoo "
        f"(looked in {', '.join(dirs)}){hint} Pass a YAML path, a zoo name like "
        f"COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x.yaml, or {SMALL_MODEL}"
    )


def load_model_config(model: ModelConfig):
    """The Detectron2 CfgNode of a model: get_cfg() defaults merged with the model's settings."""
    from detectron2.config import get_cfg

    cfg = get_cfg()
    if model.path is None:
        merge(cfg, BUILTIN_MODELS[model.name])
        return cfg
    try:
        cfg.merge_from_file(str(model.path))
    except Exception as exc:  # yaml errors, unknown keys, a missing _BASE_
        raise ConfigError(f"{WHO}: config {model.path} cannot be loaded: {type(exc).__name__}: {exc}") from None
    if not cfg.MODEL.MASK_ON:
        raise ConfigError(
            f"{WHO}: config {model.name} has MODEL.MASK_ON False: it is not an instance-segmentation "
            "model; pick a Mask R-CNN config (e.g. COCO-InstanceSegmentation/...)"
        )
    return cfg
