"""Mask R-CNN on torchvision: the adapter, with its own small training loop.

Hyperparameters are Detectron2's config keys (`trainers.maskrcnn.params`), mapped onto torchvision:
BASE_LR/MOMENTUM/WEIGHT_DECAY/OPTIMIZER -> torch.optim.SGD | AdamW (no weight decay on norm
layers); WARMUP_*/STEPS/GAMMA -> a per-iteration LambdaLR (linear warmup, then multi-step);
IMS_PER_BATCH -> batch size; BATCH_SIZE_PER_IMAGE -> box_batch_size_per_image; FREEZE_AT ->
trainable_backbone_layers = 5 - FREEZE_AT (pretrained weights only); ANCHOR_GENERATOR.SIZES ->
AnchorGenerator with aspect ratios (0.5, 1, 2); INPUT.* -> the transform's train/test sizes.

An "epoch" is `params.iters_per_epoch` iterations (the --iters-per-epoch option, or one pass over
the train set). STEPS are fractions of max_epochs x that.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
import warnings
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from segtune.cocodata.results import ImageRecord, instances_to_coco
from segtune.core.errors import ConfigError
from segtune.trainers.base import (
    EpochEnd,
    TimedInference,
    TrainerAdapter,
    TrainingDiverged,
    TrainingShape,
    TrialContext,
    timed_in_eval_mode,
)
from segtune.trainers.maskrcnn.params import (
    PARAM_NAMES,
    default_values,
    iters_per_epoch,
    steps_in_iterations,
    validate_params,
)
from segtune.trainers.maskrcnn.torchvision import models as tvm
from segtune.trainers.maskrcnn.torchvision import rng, solver
from segtune.trainers.maskrcnn.torchvision.data import CocoInstances, decode_image, train_loader
from segtune.trainers.pretrained import PretrainedWeights, locate

CHECKPOINT_FILE = "checkpoint.pt"
CHECKPOINT_FORMAT = "segtune-maskrcnn-torchvision/1"
EVAL_BATCH = {"cuda": 4, "cpu": 2}  # images per inference call: 100 full-resolution float masks each
MASK_THRESHOLD = 0.5
LOSS_KEYS = ("loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg")
NATIVE_METRICS = frozenset(f"maskrcnn/{k}" for k in ("loss", *LOSS_KEYS, "lr", "iter_time", "data_time"))


class TorchvisionMaskRCNN(TrainerAdapter):
    framework = "maskrcnn"
    backend = "torchvision"
    native_prefix = "maskrcnn/"
    default_model = "maskrcnn_resnet50_fpn_v2"
    default_model_cpu = "maskrcnn_resnet18_fpn"  # from scratch on a CPU: ~0.3 s/iteration at 96 px
    # ResNet-18 and ResNet-50 FPN; on a CPU the ResNet-50 one is ~15x slower per iteration: the small one only
    model_choices = ("maskrcnn_resnet18_fpn", "maskrcnn_resnet50_fpn_v2")
    model_choices_cpu = ("maskrcnn_resnet18_fpn",)
    packages = ("torchvision",)
    default_epochs_cpu = 12  # an epoch costs ~6x a YOLO demo epoch on CPU; AP rises within a few
    seed_key = "SEED"
    options = frozenset({"iters_per_epoch"})  # an "epoch" is a number of iterations (--iters-per-epoch)
    models = tuple(tvm.MODELS)
    # Global torch state (determinism flags) is restored after train(); RNGs are seeded per trial.
    reuse_process = True

    # ---- checks before any trial ------------------------------------------------------------
    @classmethod
    def param_names(cls) -> frozenset[str]:
        return PARAM_NAMES

    @classmethod
    def default_params(cls, keys: Iterable[str], training: TrainingShape | None = None) -> dict[str, Any]:
        return default_values(keys)

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> None:
        validate_params(params, who=cls.display_name())

    @classmethod
    def check_model(cls, model: str, weights: str | None) -> None:
        tvm.check_model(model or cls.default_model, weights)

    @classmethod
    def pretrained_weights(cls, model: str, has_gpu: bool) -> PretrainedWeights:
        """torchvision's COCO weights of the model, in torch.hub's cache ($TORCH_HOME/hub/checkpoints/<file
        name of the weights URL>). Fine-tuning trains the ResNet-50 FPN v2 model by default, on a CPU too:
        the small from-scratch model has no COCO weights."""
        model = model or cls.default_model
        coco = tvm.coco_weights(model)
        if coco is None:
            return PretrainedWeights(model, None, why_not=f"torchvision publishes no COCO weights for {model}")
        cache = tvm.hub_file(coco)
        found, can_download, why_not = locate(cache, coco.url)
        return PretrainedWeights(model, tvm.weights_name(coco), found, cache, coco.url, can_download, why_not)

    @classmethod
    def fetch_pretrained(cls, weights: PretrainedWeights) -> str:
        """torchvision's own download (hash-checked) into torch.hub's cache; trials load them from there.
        Weights already in the cache are not read here: `resolve_model` loads them once, before any trial."""
        assert weights.wanted is not None
        if weights.found_at is None:
            tvm.fetch_state_dict(tvm.resolve_weights(weights.model, weights.wanted).enum)
        return weights.wanted

    @classmethod
    def native_metric_names(cls) -> frozenset[str]:
        return NATIVE_METRICS

    # ---- one trial ----------------------------------------------------------------------------
    def __init__(self, params: Mapping[str, Any], context: TrialContext) -> None:
        super().__init__(params, context)
        self.params = validate_params(params, who=self.display_name())
        self.model_name = context.model or self.default_model
        source = tvm.resolve_weights(self.model_name, context.weights)  # unknown model / weights name: fail now
        if not source.pretrained and self.params["MODEL.BACKBONE.FREEZE_AT"] and "MODEL.BACKBONE.FREEZE_AT" in params:
            warnings.warn(
                "MODEL.BACKBONE.FREEZE_AT has no effect from scratch (no --weights): every backbone "
                "layer trains, as torchvision does",
                stacklevel=2,
            )
        self.device = torch.device(context.device)
        self.amp = context.use_cuda and bool(self.params["SOLVER.AMP.ENABLED"])
        dataset = context.dataset
        self.category_ids = tuple(int(c) for c in dataset.category_ids)
        self.num_classes = len(self.category_ids) + 1  # + background; class i+1 <-> category_ids[i]
        self.train_data = CocoInstances(dataset.train_json, dataset.train_images, self.category_ids)
        self._val_data: CocoInstances | None = None
        self.iters_per_epoch = iters_per_epoch(context, self.params["SOLVER.IMS_PER_BATCH"])
        self.total_iters = self.iters_per_epoch * context.max_epochs
        self.steps = steps_in_iterations(self.params["SOLVER.STEPS"], self.total_iters)
        self.model: nn.Module | None = None
        self.epoch = 0  # epochs completed
        self.iteration = 0  # iterations completed
        self._rng_at_epoch_end: dict[str, Any] | None = None
        self.build_info: dict[str, Any] = {}

    def _build(self, load_weights: bool) -> None:
        if self.model is not None:
            return
        rng.seed_everything(self.params["SEED"])
        model, self.build_info = tvm.build_model(
            self.model_name,
            num_classes=self.num_classes,
            params=self.params,
            weights=self.context.weights,
            max_detections=self.context.max_detections,
            load_weights=load_weights,
        )
        self.model = model.to(self.device)
        self.optimizer = solver.build_optimizer(self.model, self.params)
        self.scheduler = solver.build_scheduler(self.optimizer, self.params, self.steps)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.record_milestone("model_built")

    @property
    def amp_enabled(self) -> bool:
        return self.amp

    def train(self, on_epoch_end: EpochEnd, resume_from: Path | None = None) -> None:
        self._build(load_weights=resume_from is None)
        if resume_from is not None:
            self.load_checkpoint(Path(resume_from))
        if self.epoch >= self.context.max_epochs:
            return
        if self.context.use_cuda:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        deterministic = (
            torch.are_deterministic_algorithms_enabled(),
            torch.is_deterministic_algorithms_warn_only_enabled(),
        )
        torch.use_deterministic_algorithms(True, warn_only=True)
        try:
            self._train_epochs(on_epoch_end)
        finally:
            torch.use_deterministic_algorithms(deterministic[0], warn_only=deterministic[1])

    def _train_epochs(self, on_epoch_end: EpochEnd) -> None:
        assert self.model is not None
        ipe, max_epochs = self.iters_per_epoch, self.context.max_epochs
        loader = train_loader(
            self.train_data,
            batch_size=self.params["SOLVER.IMS_PER_BATCH"],
            seed=self.params["SEED"],
            start_iter=self.epoch * ipe,
            stop_iter=max_epochs * ipe,
            workers=self.context.workers,
        )
        batches = iter(loader)
        clip = self.params["SOLVER.CLIP_GRADIENTS.ENABLED"]
        self.model.train()
        for epoch in range(self.epoch, max_epochs):
            sums: dict[str, float] = defaultdict(float)
            data_time, lr, start = 0.0, 0.0, time.perf_counter()
            for _ in range(ipe):
                t0 = time.perf_counter()
                images, targets = next(batches)
                images = [im.to(self.device, non_blocking=True).float().div_(255) for im in images]
                targets = [{k: v.to(self.device, non_blocking=True) for k, v in t.items()} for t in targets]
                data_time += time.perf_counter() - t0
                lr = self.optimizer.param_groups[0]["lr"]
                with torch.autocast(device_type="cuda", enabled=self.amp):
                    loss_dict = self.model(images, targets)
                loss = sum(loss_dict.values())
                value = float(loss.detach())
                if not math.isfinite(value):
                    raise TrainingDiverged(f"loss is {value} at iteration {self.iteration + 1} (epoch {epoch + 1})")
                self.optimizer.zero_grad(set_to_none=True)
                self.scaler.scale(loss).backward()
                if clip:
                    self.scaler.unscale_(self.optimizer)
                    solver.clip_gradients(self.optimizer, self.params)
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.scheduler.step()
                self.iteration += 1
                self.record_milestone("first_batch")  # trained on, as Ultralytics' on_train_batch_end
                sums["loss"] += value
                for key, part in loss_dict.items():
                    sums[key] += float(part.detach())
            elapsed = time.perf_counter() - start
            self.epoch = epoch + 1
            native = {f"maskrcnn/{k}": v / ipe for k, v in sums.items()}
            native.update(
                {"maskrcnn/lr": lr, "maskrcnn/iter_time": elapsed / ipe, "maskrcnn/data_time": data_time / ipe}
            )
            # The callback evaluates and checkpoints; whatever randomness it uses, the run goes on
            # from the state a checkpoint holds, so an uninterrupted and a resumed run agree.
            self._rng_at_epoch_end = rng.capture(self.context.use_cuda)
            on_epoch_end(self.epoch, native)
            rng.restore(self._rng_at_epoch_end)
            self.model.train()

    # ---- evaluation -----------------------------------------------------------------------------
    def predict_val(self) -> list[dict[str, Any]]:
        self._build(load_weights=True)
        assert self.model is not None
        if self._val_data is None:
            ds = self.context.dataset
            self._val_data = CocoInstances(ds.val_json, ds.val_images, self.category_ids, with_targets=False)
        val = self._val_data
        records = val.records
        was_training = self.model.training
        self.model.eval()
        results: list[dict[str, Any]] = []
        try:
            with torch.no_grad(), torch.autocast(device_type="cuda", enabled=self.amp):
                batch = EVAL_BATCH["cuda" if self.context.use_cuda else "cpu"]
                for start in range(0, len(records), batch):
                    indices = range(start, min(start + batch, len(records)))
                    images = [val.load(i)[0].to(self.device).float().div_(255) for i in indices]
                    for i, out in zip(indices, self.model(images)):
                        masks = out["masks"][:, 0] >= MASK_THRESHOLD  # already pasted at full resolution
                        results += instances_to_coco(
                            records[i].image_id,
                            out["boxes"].float(),
                            out["scores"].float(),
                            out["labels"] - 1,
                            masks,
                            self.category_ids,
                        )
        finally:
            self.model.train(was_training)
        return results

    @contextlib.contextmanager
    def single_image_inference(self, image: ImageRecord) -> Iterator[TimedInference]:
        self._build(load_weights=True)
        assert self.model is not None
        model = self.model
        pixels = decode_image(image)  # uint8 CHW, as predict_val reads it

        def run() -> int:
            with torch.no_grad(), torch.autocast(device_type="cuda", enabled=self.amp):
                out = model([pixels.to(self.device).float().div_(255)])[0]
                masks = (out["masks"][:, 0] >= MASK_THRESHOLD).cpu().numpy()
                outputs = (
                    out["boxes"].float().cpu().numpy(),
                    out["scores"].float().cpu().numpy(),
                    out["labels"].cpu().numpy(),
                    masks,
                )
            return len(outputs[0])

        with timed_in_eval_mode(run, model) as timed:
            yield timed

    # ---- checkpoints ----------------------------------------------------------------------------
    def save_checkpoint(self, directory: Path) -> None:
        if self.model is None:
            raise RuntimeError("save_checkpoint before the model exists: call train() first")
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {
            "format": CHECKPOINT_FORMAT,
            "model_name": self.model_name,
            "num_classes": self.num_classes,
            "category_ids": list(self.category_ids),
            "params": self.params,
            "epoch": self.epoch,
            "iteration": self.iteration,
            "iters_per_epoch": self.iters_per_epoch,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": self._rng_at_epoch_end or rng.capture(self.context.use_cuda),
        }
        tmp = directory / (CHECKPOINT_FILE + ".tmp")
        torch.save(state, tmp)
        os.replace(tmp, directory / CHECKPOINT_FILE)

    def load_checkpoint(self, directory: Path) -> None:
        """Restore everything `save_checkpoint` wrote; training continues at the next epoch."""
        self._build(load_weights=False)
        assert self.model is not None
        path = Path(directory) / CHECKPOINT_FILE
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise ConfigError(f"cannot resume: no {CHECKPOINT_FILE} in {directory}") from None
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            raise ConfigError(f"cannot resume from {path}: not a checkpoint of the torchvision Mask R-CNN adapter")
        theirs = (state["model_name"], state["num_classes"], state["iters_per_epoch"])
        ours = (self.model_name, self.num_classes, self.iters_per_epoch)
        if theirs != ours:
            raise ConfigError(
                f"cannot resume from {path}: it was written for (model, classes, iterations per epoch) = "
                f"{theirs}, this trial has {ours}"
            )
        if state["params"] != self.params:
            warnings.warn(f"resuming from {path} written with other hyperparameters; using this trial's", stacklevel=2)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state["scaler"] and self.amp:
            self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.iteration = int(state["epoch"]), int(state["iteration"])
        self._rng_at_epoch_end = state["rng"]
        rng.restore(state["rng"])

    @classmethod
    def weights_in_checkpoint(cls, directory: Path) -> Path:
        return Path(directory) / CHECKPOINT_FILE

    @classmethod
    def native_config(cls, params: Mapping[str, Any], context: TrialContext) -> dict[str, Any]:
        p = validate_params(params, who=cls.display_name())
        model = context.model or cls.default_model
        ds = context.dataset
        ipe = iters_per_epoch(context, p["SOLVER.IMS_PER_BATCH"])
        total = ipe * context.max_epochs
        source = tvm.resolve_weights(model, context.weights)
        optimizer: dict[str, Any] = {
            "name": p["SOLVER.OPTIMIZER"],
            "lr": p["SOLVER.BASE_LR"],
            "weight_decay": p["SOLVER.WEIGHT_DECAY"],
            "weight_decay_norm": 0.0,
        }
        if p["SOLVER.OPTIMIZER"] == "SGD":
            optimizer.update(momentum=p["SOLVER.MOMENTUM"], nesterov=False)
        else:
            optimizer.update(betas=[0.9, 0.999])
        clip = p["SOLVER.CLIP_GRADIENTS.ENABLED"]
        return {
            "backend": "torchvision",
            "model": model,
            "weights": source.describe(),
            "model_kwargs": tvm.model_kwargs(
                model, p, num_classes=ds.num_classes + 1, max_detections=context.max_detections
            ),
            "trainable_backbone_layers": tvm.trainable_layers(p, source.pretrained),
            "frozen_batchnorm": tvm.MODELS[model].variant == "v1" and source.pretrained,
            "category_ids": list(ds.category_ids),
            "solver": {
                "optimizer": optimizer,
                "batch_size": p["SOLVER.IMS_PER_BATCH"],
                "iters_per_epoch": ipe,
                "max_epochs": context.max_epochs,
                "max_iter": total,
                "warmup_iters": p["SOLVER.WARMUP_ITERS"],
                "warmup_factor": p["SOLVER.WARMUP_FACTOR"],
                "steps": steps_in_iterations(p["SOLVER.STEPS"], total),
                "gamma": p["SOLVER.GAMMA"],
                "clip_gradients": {
                    "type": p["SOLVER.CLIP_GRADIENTS.CLIP_TYPE"],
                    "value": p["SOLVER.CLIP_GRADIENTS.CLIP_VALUE"],
                    "norm_type": p["SOLVER.CLIP_GRADIENTS.NORM_TYPE"],
                    "per_parameter": True,
                }
                if clip
                else None,
                "amp": context.use_cuda and p["SOLVER.AMP.ENABLED"],
            },
            "seed": p["SEED"],
            "params": p,
        }
