"""The full Detectron2 config of one trial: the model's config, then the searched parameters, then
the keys the trial sets itself (budget, datasets, device, outputs).

Only APIs present in both Detectron2 v0.6 and its current main are used.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segtune.trainers.base import TrialContext
from segtune.trainers.maskrcnn.detectron2.params import EXTENSION_KEYS, WHO, merge, normalise_params
from segtune.trainers.maskrcnn.detectron2.zoo import load_model_config, resolve_model
from segtune.trainers.maskrcnn.params import iters_per_epoch, steps_in_iterations

SCORE_THRESH_TEST = 0.001  # COCO AP counts low-confidence detections; Detectron2's default is 0.05


@dataclass
class Plan:
    cfg: Any  # detectron2 CfgNode, frozen
    iters_per_epoch: int


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
    merge(cfg, {k: v for k, v in vocab.items() if k not in EXTENSION_KEYS and k != "SOLVER.STEPS"})
    merge(cfg, native)
    if not weights and cfg.MODEL.BACKBONE.FREEZE_AT:
        # Freezing randomly initialised layers only cripples the model; the shared vocabulary's
        # FREEZE_AT takes effect with pretrained weights only (as in the torchvision backend).
        if "MODEL.BACKBONE.FREEZE_AT" in vocab:
            warnings.warn(
                f"{WHO}: MODEL.BACKBONE.FREEZE_AT has no effect from scratch (no --weights): "
                "every backbone layer trains",
                stacklevel=2,
            )
        merge(cfg, {"MODEL.BACKBONE.FREEZE_AT": 0})
    per_epoch = iters_per_epoch(context, cfg.SOLVER.IMS_PER_BATCH)
    max_iter = context.max_epochs * per_epoch
    merge(
        cfg,
        {
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
        },
    )
    # Every detection is a refined proposal: fewer proposals than detections would cap dense images.
    # (PRE_NMS_TOPK_TEST is per feature level, POST_NMS_TOPK_TEST per image.)
    post = max(cfg.MODEL.RPN.POST_NMS_TOPK_TEST, context.max_detections)
    merge(
        cfg,
        {
            "MODEL.RPN.POST_NMS_TOPK_TEST": post,
            "MODEL.RPN.PRE_NMS_TOPK_TEST": max(cfg.MODEL.RPN.PRE_NMS_TOPK_TEST, post),
        },
    )
    cfg.freeze()
    return Plan(cfg, per_epoch)
