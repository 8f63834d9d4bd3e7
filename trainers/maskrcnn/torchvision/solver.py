"""The optimizer, lr schedule and gradient clipping of the torchvision backend, as the shared Mask R-CNN
vocabulary defines them (`trainers.maskrcnn.params`): Detectron2's semantics on a plain torch loop."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from segtune.trainers.maskrcnn.params import lr_multiplier

NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm)


def optimizer_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Detectron2's groups: weight decay everywhere but on normalisation layers."""
    decay, no_decay, seen = [], [], set()
    for module in model.modules():
        for param in module.parameters(recurse=False):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            (no_decay if isinstance(module, NORM_TYPES) else decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def build_optimizer(model: nn.Module, params: Mapping[str, Any]) -> torch.optim.Optimizer:
    """SGD with SOLVER.MOMENTUM, or AdamW (betas (0.9, 0.999)), at SOLVER.BASE_LR."""
    groups = optimizer_groups(model, params["SOLVER.WEIGHT_DECAY"])
    if params["SOLVER.OPTIMIZER"] == "AdamW":
        return torch.optim.AdamW(groups, lr=params["SOLVER.BASE_LR"])
    return torch.optim.SGD(groups, lr=params["SOLVER.BASE_LR"], momentum=params["SOLVER.MOMENTUM"])


def build_scheduler(
    optimizer: torch.optim.Optimizer, params: Mapping[str, Any], steps: Sequence[int]
) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-iteration linear warmup, then a multi-step decay at `steps` (iterations)."""
    warmup, factor, gamma = params["SOLVER.WARMUP_ITERS"], params["SOLVER.WARMUP_FACTOR"], params["SOLVER.GAMMA"]
    steps = list(steps)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda it: lr_multiplier(it, warmup_iters=warmup, warmup_factor=factor, steps=steps, gamma=gamma)
    )


def clip_gradients(optimizer: torch.optim.Optimizer, params: Mapping[str, Any]) -> None:
    """Detectron2's per-parameter clipping (CLIP_TYPE value | norm)."""
    grads = [q for g in optimizer.param_groups for q in g["params"] if q.grad is not None]
    value = params["SOLVER.CLIP_GRADIENTS.CLIP_VALUE"]
    if params["SOLVER.CLIP_GRADIENTS.CLIP_TYPE"] == "value":
        torch.nn.utils.clip_grad_value_(grads, value)
    else:
        for param in grads:
            torch.nn.utils.clip_grad_norm_(param, value, params["SOLVER.CLIP_GRADIENTS.NORM_TYPE"])
