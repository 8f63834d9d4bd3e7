"""Detectron2 configs for the Detectron2 Mask R-CNN backend: models, weights, parameters, the cfg.

Nothing here imports `detectron2.model_zoo`: that module imports `pkg_resources`, which
setuptools >= 81 no longer ships. Model-zoo configs are found as files inside the installed
package (`detectron2/model_zoo/configs`, which detectron2's setup.py fills for normal installs and
symlinks for editable ones), and the zoo's weight URLs are read from `model_zoo.py` as text.
Only APIs present in both Detectron2 v0.6 and its current main are used.
"""
from __future__ import annotations

import ast
import difflib
import functools
import importlib.util
import math
import pickle
import urllib.error
import urllib.request
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from cocodata.results import list_images
from trainers.base import ConfigError, TrialContext
from trainers.maskrcnn_params import PARAM_NAMES, steps_in_iterations, to_python, validate_params

WHO = "maskrcnn (detectron2)"
SMALL_MODEL = "segtune/mask_rcnn_R_18_FPN_small"
SCORE_THRESH_TEST = 0.001  # COCO AP counts low-confidence detections; Detectron2's default is 0.05
URL_PREFIX = "https://dl.fbaipublicfiles.com/detectron2/"  # what "detectron2://" stands for
PROBE_TIMEOUT_S = 5.0

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

# Keys the trial sets itself (datasets, budget, device, outputs): a search space may not touch them.
CONTROLLED = frozenset({
    "OUTPUT_DIR", "VERSION", "MODEL.DEVICE", "MODEL.WEIGHTS", "MODEL.MASK_ON", "MODEL.KEYPOINT_ON",
    "MODEL.LOAD_PROPOSALS", "MODEL.ROI_HEADS.NUM_CLASSES", "MODEL.RETINANET.NUM_CLASSES",
    "MODEL.SEM_SEG_HEAD.NUM_CLASSES", "SOLVER.MAX_ITER", "SOLVER.CHECKPOINT_PERIOD",
    "SOLVER.REFERENCE_WORLD_SIZE", "TEST.EVAL_PERIOD", "TEST.EXPECTED_RESULTS",
    "TEST.DETECTIONS_PER_IMAGE", "DATALOADER.NUM_WORKERS",
})
CONTROLLED_PREFIXES = ("DATASETS.", "TEST.AUG.")  # test-time augmentation is not used by predict_val
_EXTENSIONS = frozenset({"SOLVER.OPTIMIZER"})  # vocabulary keys that are not Detectron2 keys


def _controlled(key: str) -> bool:
    return key in CONTROLLED or key.startswith(CONTROLLED_PREFIXES)


# ---- where detectron2 keeps its model zoo ------------------------------------------------------
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


# ---- models ------------------------------------------------------------------------------------
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


# ---- weights -----------------------------------------------------------------------------------
def weights_url(weights: str) -> str | None:
    """The download URL that `weights` names, or None for a local file (existing or not)."""
    if weights.startswith("detectron2://"):
        return URL_PREFIX + weights[len("detectron2://"):]
    if weights.startswith(("http://", "https://")):
        return weights
    if Path(weights).expanduser().exists():
        return None
    name = weights.removeprefix("configs/")
    for suffix in (".yaml", ".py"):
        name = name.removesuffix(suffix)
    urls = zoo_weight_urls()
    if name in urls:
        return urls[name]
    if weights.endswith(".yaml") and any((d / weights).is_file() for d in zoo_dirs()):
        raise ConfigError(f"{WHO}: the model zoo publishes no trained weights for {weights}; pass a weights file")
    return None


def cached_path(url: str) -> Path:
    """Where detectron2's PathManager (iopath) caches a downloaded URL."""
    from iopath.common.file_io import get_cache_dir

    parsed = urlparse(url)
    return Path(get_cache_dir()) / Path(parsed.path.lstrip("/")).parent / url.split("/")[-1]


def _open_url(url: str) -> None:
    """A HEAD request: raises URLError/OSError when offline, HTTPError when the file is missing."""
    with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=PROBE_TIMEOUT_S):
        pass


def check_weights_file(path: Path) -> None:
    """Load the file the way Detectron2's checkpointer will, so a corrupt file fails here."""
    try:
        if path.suffix == ".pkl":
            with open(path, "rb") as f:
                data = pickle.load(f, encoding="latin1")
        else:
            import torch

            data = torch.load(path, map_location="cpu")
    except Exception as exc:
        raise ConfigError(
            f"{WHO}: weights file {path} cannot be loaded ({type(exc).__name__}); it is corrupt or "
            "not a Detectron2/Caffe2 checkpoint"
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{WHO}: weights file {path} holds a {type(data).__name__}, not a checkpoint dict")


def resolve_weights(weights: str | None, *, download: bool = True, check: bool = True) -> str:
    """A local weights file for MODEL.WEIGHTS ("" = from scratch); downloads into Detectron2's cache."""
    if not weights:
        return ""
    url = weights_url(weights)
    if url is None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise ConfigError(
                f"{WHO}: weights file {weights} does not exist; pass a .pth/.pkl file, a detectron2:// "
                "URL, a zoo config name (its trained weights), or no weights to train from scratch"
            )
        if check:
            check_weights_file(path)
        return str(path.resolve())
    cached = cached_path(url)
    if cached.is_file():
        return str(cached)
    if not download:
        return url
    try:
        _open_url(url)
    except urllib.error.HTTPError as exc:
        raise ConfigError(
            f"{WHO}: weights {weights} ({url}) cannot be downloaded: HTTP {exc.code}; check the name"
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ConfigError(
            f"{WHO}: weights {weights} need a download from {url} and this machine is offline "
            f"({reason}); pass a local weights file, or no weights to train from scratch"
        ) from None
    from detectron2.utils.file_io import PathManager

    local = Path(PathManager.get_local_path(url))
    if check:
        check_weights_file(local)
    return str(local)


# ---- parameters --------------------------------------------------------------------------------
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
    if (isinstance(original, int) and not isinstance(original, bool) and isinstance(value, float)
            and value.is_integer()):
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


# ---- the trial's config ------------------------------------------------------------------------
@dataclass
class Plan:
    cfg: Any  # detectron2 CfgNode, frozen
    iters_per_epoch: int


def iters_per_epoch(context: TrialContext, ims_per_batch: int) -> int:
    if context.iters_per_epoch:
        return int(context.iters_per_epoch)
    n_train = context.dataset.num_train_images or len(
        list_images(context.dataset.train_json, context.dataset.train_images)
    )
    return max(1, math.ceil(n_train / ims_per_batch))


def build_cfg(params: Mapping[str, Any], context: TrialContext, *, train_dataset: str, weights: str) -> Plan:
    """The full Detectron2 cfg of one trial: model config, then the params, then the trial's own keys."""
    vocab, native = normalise_params(params)
    cfg = load_model_config(resolve_model(context.model))
    # Adapter defaults a search may override.
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = SCORE_THRESH_TEST
    cfg.SOLVER.OPTIMIZER = vocab.get("SOLVER.OPTIMIZER", "SGD")  # segtune's extension key
    # The config's own STEPS are iterations of its own MAX_ITER: keep their place in the schedule.
    steps = vocab.get("SOLVER.STEPS")
    if steps is None:
        steps = [s / cfg.SOLVER.MAX_ITER for s in cfg.SOLVER.STEPS if 0 < s < cfg.SOLVER.MAX_ITER]
    merge(cfg, {k: v for k, v in vocab.items() if k not in _EXTENSIONS and k != "SOLVER.STEPS"})
    merge(cfg, native)
    if not weights and cfg.MODEL.BACKBONE.FREEZE_AT:
        # Freezing randomly initialised layers only cripples the model; the shared vocabulary's
        # FREEZE_AT takes effect with pretrained weights only (as in the torchvision backend).
        if "MODEL.BACKBONE.FREEZE_AT" in vocab:
            warnings.warn(f"{WHO}: MODEL.BACKBONE.FREEZE_AT has no effect from scratch (no --weights): "
                          "every backbone layer trains", stacklevel=2)
        merge(cfg, {"MODEL.BACKBONE.FREEZE_AT": 0})
    per_epoch = iters_per_epoch(context, cfg.SOLVER.IMS_PER_BATCH)
    max_iter = context.max_epochs * per_epoch
    merge(cfg, {
        "SOLVER.MAX_ITER": max_iter,
        "SOLVER.STEPS": steps_in_iterations(steps, max_iter),
        "SOLVER.CHECKPOINT_PERIOD": max_iter + 1,  # the trial checkpoints through save_checkpoint
        "SOLVER.REFERENCE_WORLD_SIZE": 0,
        "SOLVER.AMP.ENABLED": bool(cfg.SOLVER.AMP.ENABLED) and context.use_cuda,
        "TEST.EVAL_PERIOD": 0,  # segtune evaluates with its own COCO evaluator
        "TEST.EXPECTED_RESULTS": [],
        "TEST.DETECTIONS_PER_IMAGE": context.max_detections,
        "DATASETS.TRAIN": (train_dataset,),
        "DATASETS.TEST": (),
        "DATALOADER.NUM_WORKERS": context.workers,
        "MODEL.ROI_HEADS.NUM_CLASSES": context.dataset.num_classes,
        "MODEL.MASK_ON": True,
        "MODEL.DEVICE": context.device,
        "MODEL.WEIGHTS": weights,
        "OUTPUT_DIR": str(Path(context.output_dir).resolve() / "detectron2"),
        "SEED": vocab.get("SEED", 0),
    })
    cfg.freeze()
    return Plan(cfg, per_epoch)
