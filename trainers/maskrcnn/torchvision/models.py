"""torchvision Mask R-CNN models for the torchvision backend: building, weights, offline checks.

Models:
* maskrcnn_resnet50_fpn     torchvision's v1 (FrozenBN backbone with pretrained weights, BN from scratch)
* maskrcnn_resnet50_fpn_v2  torchvision's v2 (BatchNorm everywhere, 4conv1fc box head, 2-conv RPN head)
* maskrcnn_resnet18_fpn     a small model for CPU tests and demos: ResNet-18 FPN with trainable
                            BatchNorm, 128-channel FPN and heads, 200/100 RPN proposals.
Test-time proposals are raised to at least the detection limit in every model (dense scenes).

Weights (`context.weights`): None = from scratch (backbone too); a local file (a state_dict, or a
`checkpoint.pt` written by the adapter); or a torchvision weights name: a detection one
("DEFAULT", "COCO_V1" for the ResNet-50 models) or a backbone one ("IMAGENET1K_V1", ...).
Tensors whose shapes do not fit (the class-dependent predictors) are left at their initial values.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn
from torchvision.models import ResNet18_Weights, ResNet50_Weights, resnet18, resnet50
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN, _resnet_fpn_extractor
from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead, FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import (
    MaskRCNN_ResNet50_FPN_V2_Weights,
    MaskRCNN_ResNet50_FPN_Weights,
    MaskRCNNHeads,
    MaskRCNNPredictor,
)
from torchvision.models.detection.rpn import RPNHead
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops import misc as misc_nn_ops

from segtune.core.errors import ConfigError
from segtune.trainers.pretrained import host_reachable

ASPECT_RATIOS = (0.5, 1.0, 2.0)
BOX_SCORE_THRESH = 0.001  # torchvision's 0.05 hides low-confidence detections that COCO AP counts
IMAGE_MEAN = (0.485, 0.456, 0.406)
IMAGE_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ModelSpec:
    backbone: str  # "resnet50" | "resnet18"
    variant: str  # "v1" | "v2" | "small"
    detection_weights: Any  # the torchvision weights enum of the whole model, or None
    backbone_weights: Any


MODELS: dict[str, ModelSpec] = {
    "maskrcnn_resnet50_fpn": ModelSpec("resnet50", "v1", MaskRCNN_ResNet50_FPN_Weights, ResNet50_Weights),
    "maskrcnn_resnet50_fpn_v2": ModelSpec("resnet50", "v2", MaskRCNN_ResNet50_FPN_V2_Weights, ResNet50_Weights),
    "maskrcnn_resnet18_fpn": ModelSpec("resnet18", "small", None, ResNet18_Weights),
}
SMALL_CHANNELS = 128  # FPN, RPN and box head (FC 512) width of the small model
SMALL_MASK_CHANNELS = 64  # the mask head runs on every detection at test time: keep it narrow
SMALL_SAMPLING_RATIO = 0  # RoIAlign samples per bin: adaptive (Detectron2's default), 1 on small RoIs
SMALL_RPN = {
    "rpn_pre_nms_top_n_train": 200,
    "rpn_post_nms_top_n_train": 100,
    "rpn_pre_nms_top_n_test": 200,
    "rpn_post_nms_top_n_test": 100,
}
TORCHVISION_RPN_TEST = 1000  # torchvision's own pre- and post-NMS test proposals (per level / per image)


class TrainTestTransform(GeneralizedRCNNTransform):
    """GeneralizedRCNNTransform with separate train and test sizes (Detectron2's INPUT.*).

    In training one of `min_size_train` is chosen at random per image (Detectron2's "choice").
    """

    def __init__(self, min_size_train: list[int], max_size_train: int, min_size_test: int, max_size_test: int) -> None:
        super().__init__(tuple(min_size_train), max_size_train, list(IMAGE_MEAN), list(IMAGE_STD))
        self.train_sizes = (tuple(min_size_train), int(max_size_train))
        self.test_sizes = ((int(min_size_test),), int(max_size_test))

    def resize(self, image, target=None):
        self.min_size, self.max_size = self.train_sizes if self.training else self.test_sizes
        return super().resize(image, target)


# ---- weights --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WeightsSource:
    kind: str  # "none" | "file" | "detection" | "backbone"
    path: Path | None = None
    enum: Any = None  # the torchvision Weights member

    @property
    def pretrained(self) -> bool:
        return self.kind != "none"

    def describe(self) -> str | None:
        if self.kind == "file":
            return str(self.path)
        if self.enum is not None:
            return f"{type(self.enum).__name__}.{self.enum.name}"
        return None


def _check_model_name(model: str) -> ModelSpec:
    if model not in MODELS:
        raise ConfigError(f"unknown torchvision Mask R-CNN model {model!r}; choose one of: {', '.join(MODELS)}")
    return MODELS[model]


def resolve_weights(model: str, weights: str | None) -> WeightsSource:
    """Decide what `weights` means for `model`, without loading or downloading anything."""
    spec = _check_model_name(model)
    if weights is None or str(weights).strip() == "":
        return WeightsSource("none")
    text = str(weights).strip()
    path = Path(text).expanduser()
    looks_like_path = os.sep in text or path.suffix in {".pt", ".pth", ".pkl", ".bin", ".ckpt"}
    if path.exists() or looks_like_path:
        return WeightsSource("file", path=path.resolve())
    name = text.split(".")[-1]  # "MaskRCNN_ResNet50_FPN_Weights.COCO_V1" -> "COCO_V1"
    for kind, enum in (("detection", spec.detection_weights), ("backbone", spec.backbone_weights)):
        if enum is not None and (name in enum.__members__ or name == "DEFAULT"):
            return WeightsSource(kind, enum=enum[name] if name != "DEFAULT" else enum.DEFAULT)
    names = [n for e in (spec.detection_weights, spec.backbone_weights) if e is not None for n in e.__members__]
    raise ConfigError(
        f"weights {text!r}: no such file, and not a torchvision weights name for {model} "
        f"(known: DEFAULT, {', '.join(dict.fromkeys(names))}); pass a local weights file or leave --weights out"
    )


def coco_weights(model: str) -> Any:
    """The torchvision COCO weights member of a model (e.g. MaskRCNN_ResNet50_FPN_V2_Weights.COCO_V1),
    or None when torchvision publishes none for it (the small ResNet-18 model)."""
    spec = _check_model_name(model)
    return spec.detection_weights.COCO_V1 if spec.detection_weights is not None else None


def weights_name(weights_enum: Any) -> str:
    """A weights member as `resolve_weights` reads it back, e.g. "MaskRCNN_ResNet50_FPN_V2_Weights.COCO_V1"."""
    return f"{type(weights_enum).__name__}.{weights_enum.name}"


def hub_file(weights_enum: Any) -> Path:
    """Where torch.hub keeps (or would keep) the download of a torchvision weights member."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(weights_enum.url).path)


def is_online(url: str, timeout: float = 3.0) -> bool:
    """Can `url`'s host be reached? Bounded by `timeout` even when DNS hangs (trainers/pretrained.py)."""
    return host_reachable(url, timeout)


def read_weights_file(path: Path) -> dict[str, torch.Tensor]:
    """A state_dict from a file: a plain state_dict, or a checkpoint holding one under "model"."""
    if not path.is_file():
        raise ConfigError(f"weights file {path} does not exist; pass an existing file or leave --weights out")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt, truncated, or a pickled module (not weights_only-safe)
        raise ConfigError(
            f"weights file {path} cannot be read as PyTorch weights ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:200] if str(exc) else ''}); pass a state_dict saved with torch.save"
        ) from None
    for key in ("model", "state_dict"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if not (isinstance(obj, Mapping) and obj and all(isinstance(v, torch.Tensor) for v in obj.values())):
        raise ConfigError(f"weights file {path} holds no state_dict (name -> tensor); pass a model state_dict")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def load_matching(model: nn.Module, state: Mapping[str, torch.Tensor], *, source: str, model_name: str) -> list[str]:
    """Load every tensor of `state` whose name and shape fit; return the names left out.

    Fewer than half of the model's tensors fitting means the weights belong to another model.
    """
    own = model.state_dict()
    matched = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    wanted = [k for k in own if not k.endswith("num_batches_tracked")]
    if len(matched) < 0.5 * len(wanted):
        raise ConfigError(
            f"weights {source} do not fit {model_name}: only {len(matched)} of {len(wanted)} tensors match; "
            "pass weights of the same model (--model) or leave --weights out"
        )
    model.load_state_dict(matched, strict=False)
    return sorted(set(wanted) - set(matched))


def fetch_state_dict(weights_enum: Any) -> dict[str, torch.Tensor]:
    """Load torchvision weights from the hub cache, downloading only when online."""
    if not hub_file(weights_enum).is_file() and not is_online(weights_enum.url):
        raise ConfigError(
            f"torchvision weights {type(weights_enum).__name__}.{weights_enum.name} needs a download and this "
            "machine is offline; pass a local weights file or leave --weights out"
        )
    try:
        return weights_enum.get_state_dict(progress=False, check_hash=True)
    except Exception as exc:
        raise ConfigError(
            f"weights {type(weights_enum).__name__}.{weights_enum.name} could not be loaded or downloaded "
            f"({type(exc).__name__}: {exc}); pass a local weights file or leave --weights out"
        ) from None


def check_model(model: str, weights: str | None, *, num_classes: int = 2) -> None:
    """Raise ConfigError when `model`/`weights` cannot be used here (before any trial starts).

    Downloads torchvision weights into the hub cache when online (once, for every trial).
    """
    source = resolve_weights(model, weights)
    if source.kind == "file":
        state = read_weights_file(source.path)
        net = _build_architecture(model, num_classes=num_classes, params=None, pretrained=True)
        load_matching(net, state, source=str(source.path), model_name=model)
    elif source.kind in ("detection", "backbone"):
        fetch_state_dict(source.enum)


# ---- building -------------------------------------------------------------------------------------
def trainable_layers(params: Mapping[str, Any], pretrained: bool) -> int:
    """Detectron2 FREEZE_AT -> torchvision trainable_backbone_layers; from scratch nothing is frozen."""
    if not pretrained:
        return 5  # freezing randomly initialised layers never helps (torchvision does the same)
    return max(0, min(5, 5 - int(params["MODEL.BACKBONE.FREEZE_AT"])))


def model_kwargs(model: str, params: Mapping[str, Any], *, num_classes: int, max_detections: int) -> dict[str, Any]:
    """The MaskRCNN constructor arguments this backend uses (also reported by native_config)."""
    spec = _check_model_name(model)
    kwargs: dict[str, Any] = {
        "num_classes": num_classes,
        "min_size": list(params["INPUT.MIN_SIZE_TRAIN"]),
        "max_size": params["INPUT.MAX_SIZE_TRAIN"],
        "min_size_test": params["INPUT.MIN_SIZE_TEST"],
        "max_size_test": params["INPUT.MAX_SIZE_TEST"],
        "box_batch_size_per_image": params["MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE"],
        "box_detections_per_img": int(max_detections),
        "box_score_thresh": BOX_SCORE_THRESH,
        "anchor_sizes": [list(level) for level in params["MODEL.ANCHOR_GENERATOR.SIZES"]],
        "aspect_ratios": list(ASPECT_RATIOS),
    }
    if spec.variant == "small":
        kwargs.update(SMALL_RPN)
    # Every detection is a refined proposal: fewer proposals than detections would cap dense images.
    post = max(kwargs.get("rpn_post_nms_top_n_test", TORCHVISION_RPN_TEST), int(max_detections))
    kwargs["rpn_post_nms_top_n_test"] = post
    kwargs["rpn_pre_nms_top_n_test"] = max(kwargs.get("rpn_pre_nms_top_n_test", TORCHVISION_RPN_TEST), post)
    return kwargs


def _resnet_fpn(spec: ModelSpec, *, trainable: int, backbone_weights: Any, frozen_bn: bool) -> BackboneWithFPN:
    norm = misc_nn_ops.FrozenBatchNorm2d if frozen_bn else nn.BatchNorm2d
    factory = resnet50 if spec.backbone == "resnet50" else resnet18
    body = factory(weights=backbone_weights, progress=False, norm_layer=norm)
    if spec.variant == "small":
        layers = ["layer4", "layer3", "layer2", "layer1", "conv1"][:trainable] + (["bn1"] if trainable == 5 else [])
        for name, parameter in body.named_parameters():
            if not any(name.startswith(layer) for layer in layers):
                parameter.requires_grad_(False)
        return BackboneWithFPN(
            body, {f"layer{k}": str(k - 1) for k in (1, 2, 3, 4)}, [64, 128, 256, 512], SMALL_CHANNELS
        )
    fpn_norm = nn.BatchNorm2d if spec.variant == "v2" else None
    return _resnet_fpn_extractor(body, trainable, norm_layer=fpn_norm)


def _build_architecture(
    model: str,
    *,
    num_classes: int,
    params: Mapping[str, Any] | None,
    pretrained: bool,
    max_detections: int = 100,
    backbone_weights: Any = None,
) -> MaskRCNN:
    from segtune.trainers.maskrcnn.params import validate_params

    spec = _check_model_name(model)
    params = validate_params(params or {})
    kw = model_kwargs(model, params, num_classes=num_classes, max_detections=max_detections)
    frozen_bn = spec.variant == "v1" and pretrained
    backbone = _resnet_fpn(
        spec, trainable=trainable_layers(params, pretrained), backbone_weights=backbone_weights, frozen_bn=frozen_bn
    )
    anchors = AnchorGenerator(
        tuple(tuple(level) for level in kw.pop("anchor_sizes")),
        (tuple(kw.pop("aspect_ratios")),) * len(params["MODEL.ANCHOR_GENERATOR.SIZES"]),
    )
    num_anchors = anchors.num_anchors_per_location()[0]
    ch = backbone.out_channels
    min_size_test, max_size_test = kw.pop("min_size_test"), kw.pop("max_size_test")
    extra: dict[str, Any] = {}
    if spec.variant == "v2":
        extra = {
            "rpn_head": RPNHead(ch, num_anchors, conv_depth=2),
            "box_head": FastRCNNConvFCHead((ch, 7, 7), [256, 256, 256, 256], [1024], norm_layer=nn.BatchNorm2d),
            "mask_head": MaskRCNNHeads(ch, [256, 256, 256, 256], 1, norm_layer=nn.BatchNorm2d),
        }
    elif spec.variant == "small":
        rep = 4 * SMALL_CHANNELS
        extra = {
            "rpn_head": RPNHead(ch, num_anchors),
            "box_head": TwoMLPHead(ch * 7 * 7, rep),
            "box_predictor": FastRCNNPredictor(rep, num_classes),
            "box_roi_pool": MultiScaleRoIAlign(["0", "1", "2", "3"], 7, sampling_ratio=SMALL_SAMPLING_RATIO),
            "mask_roi_pool": MultiScaleRoIAlign(["0", "1", "2", "3"], 14, sampling_ratio=SMALL_SAMPLING_RATIO),
            "mask_head": MaskRCNNHeads(ch, [SMALL_MASK_CHANNELS] * 4, 1, norm_layer=nn.BatchNorm2d),
            "mask_predictor": MaskRCNNPredictor(SMALL_MASK_CHANNELS, SMALL_MASK_CHANNELS, num_classes),
        }
        kw.pop("num_classes")
    net = MaskRCNN(backbone, rpn_anchor_generator=anchors, **extra, **kw)
    net.transform = TrainTestTransform(kw["min_size"], kw["max_size"], min_size_test, max_size_test)
    return net


def build_model(
    model: str,
    *,
    num_classes: int,
    params: Mapping[str, Any],
    weights: str | None,
    max_detections: int,
    load_weights: bool = True,
) -> tuple[MaskRCNN, dict[str, Any]]:
    """The model for a trial; `load_weights=False` builds the same architecture without loading
    (used when a checkpoint is about to be restored). Returns (model, info for native_config)."""
    source = resolve_weights(model, weights)
    backbone_weights = source.enum if (load_weights and source.kind == "backbone") else None
    if backbone_weights is not None:
        fetch_state_dict(backbone_weights)  # a clear error offline instead of a failing download
    net = _build_architecture(
        model,
        num_classes=num_classes,
        params=params,
        pretrained=source.pretrained,
        max_detections=max_detections,
        backbone_weights=backbone_weights,
    )
    left_out: list[str] = []
    if load_weights and source.kind == "file":
        left_out = load_matching(net, read_weights_file(source.path), source=str(source.path), model_name=model)
    elif load_weights and source.kind == "detection":
        left_out = load_matching(net, fetch_state_dict(source.enum), source=source.describe(), model_name=model)
        if source.enum == MaskRCNN_ResNet50_FPN_Weights.COCO_V1:
            for module in net.modules():
                if isinstance(module, misc_nn_ops.FrozenBatchNorm2d):
                    module.eps = 0.0
    info = {
        "weights": source.describe(),
        "trainable_backbone_layers": trainable_layers(params, source.pretrained),
        "frozen_batchnorm": MODELS[model].variant == "v1" and source.pretrained,
        "weights_left_out": left_out,
    }
    return net, info
