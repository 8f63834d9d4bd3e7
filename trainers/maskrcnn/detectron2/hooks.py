"""The Detectron2 side of a trial: its trainer, its epoch hook, its dataset, its log and its predictor.

Modelled on `detectron2/engine/hooks.py`: small classes with one duty each. Only APIs present in
both Detectron2 v0.6 and its current main are used.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.data import DatasetCatalog, MetadataCatalog, detection_utils
from detectron2.data import transforms as T
from detectron2.data.datasets import load_coco_json
from detectron2.engine import DefaultTrainer, HookBase, hooks
from detectron2.solver import LRMultiplier
from detectron2.solver.build import get_default_optimizer_params, maybe_add_gradient_clipping
from detectron2.utils.logger import setup_logger
from fvcore.common.param_scheduler import ParamScheduler

from segtune.cocodata.results import ImageRecord
from segtune.trainers.maskrcnn.params import lr_multiplier

LOG_FORMAT = "[%(asctime)s] %(name)s %(levelname)s: %(message)s"


class SegtuneTrainer(DefaultTrainer):
    """DefaultTrainer adapted to a trial: AdamW besides SGD (SOLVER.OPTIMIZER), the shared lr
    schedule, the optimizer state in checkpoints, and the trial's hooks instead of Detectron2's
    evaluation and checkpoint hooks.

    The trial evaluates with segtune's COCO evaluator and checkpoints through the adapter, so
    Detectron2's EvalHook and PeriodicCheckpointer (which writes model_final.pth) are dropped; the
    extra hooks run where the checkpointer was: after the LR scheduler, before the writers.
    """

    def __init__(self, cfg, extra_hooks: Sequence[HookBase] = ()) -> None:
        self._extra_hooks = list(extra_hooks)  # read by build_hooks, which DefaultTrainer calls
        super().__init__(cfg)

    @classmethod
    def build_optimizer(cls, cfg, model):
        if cfg.SOLVER.get("OPTIMIZER", "SGD") != "AdamW":
            return super().build_optimizer(cfg, model)
        params = get_default_optimizer_params(
            model,
            base_lr=cfg.SOLVER.BASE_LR,
            weight_decay_norm=cfg.SOLVER.WEIGHT_DECAY_NORM,
            bias_lr_factor=cfg.SOLVER.BIAS_LR_FACTOR,
            weight_decay_bias=cfg.SOLVER.WEIGHT_DECAY_BIAS,
        )
        return maybe_add_gradient_clipping(cfg, torch.optim.AdamW)(
            params, lr=cfg.SOLVER.BASE_LR, weight_decay=cfg.SOLVER.WEIGHT_DECAY
        )

    @classmethod
    def build_lr_scheduler(cls, cfg, optimizer):
        """WarmupMultiStepLR as the shared vocabulary defines it (`trainers.maskrcnn.params.lr_multiplier`).

        Detectron2's own version differs in two corners a short search budget reaches: a step
        inside the warmup changes the warmup's target instead of multiplying it, and fvcore refuses
        steps that round to 0, to MAX_ITER or onto each other. Elsewhere both give the same lr.
        """
        solver = cfg.SOLVER
        if (
            solver.LR_SCHEDULER_NAME != "WarmupMultiStepLR"
            or solver.WARMUP_METHOD != "linear"
            or solver.get("RESCALE_INTERVAL", False)
        ):
            return super().build_lr_scheduler(cfg, optimizer)
        return LRMultiplier(optimizer, multiplier=SharedStepSchedule(cfg), max_iter=solver.MAX_ITER)

    def build_hooks(self):
        kept = [h for h in super().build_hooks() if not isinstance(h, (hooks.EvalHook, hooks.PeriodicCheckpointer))]
        at = next((i for i, h in enumerate(kept) if isinstance(h, hooks.PeriodicWriter)), len(kept))
        return kept[:at] + self._extra_hooks + kept[at:]

    # Detectron2 v0.6's DefaultTrainer checkpoints only the iteration and the hooks' states (the LR
    # scheduler); later versions add the inner trainer's (optimizer, AMP grad scaler) under
    # "_trainer". Saving it here makes a resumed trial keep its momentum / Adam moments on both.
    _BASE_SAVES_INNER = "state_dict" in vars(DefaultTrainer)

    def state_dict(self):
        state = super().state_dict()
        state["_trainer"] = self._trainer.state_dict()
        return state

    def load_state_dict(self, state_dict):
        super().load_state_dict(state_dict)
        if not self._BASE_SAVES_INNER and "_trainer" in state_dict:
            self._trainer.load_state_dict(state_dict["_trainer"])


class SharedStepSchedule(ParamScheduler):
    """`trainers.maskrcnn.params.lr_multiplier` as the fvcore ParamScheduler Detectron2's LRMultiplier calls."""

    def __init__(self, cfg) -> None:
        self._max_iter = cfg.SOLVER.MAX_ITER
        self._shape = {
            "warmup_iters": cfg.SOLVER.WARMUP_ITERS,
            "warmup_factor": cfg.SOLVER.WARMUP_FACTOR,
            "steps": sorted(cfg.SOLVER.STEPS),
            "gamma": cfg.SOLVER.GAMMA,
        }

    def __call__(self, where: float) -> float:
        return lr_multiplier(int(round(where * self._max_iter)), **self._shape)


def epoch_metrics(storage, first_iter: int, last_iter: int) -> dict[str, float]:
    """Every scalar of the EventStorage over iterations [first_iter, last_iter]: the mean, but the
    last value of the learning rate."""
    metrics = {}
    for name, history in storage.histories().items():
        values = [float(v) for v, it in history.values() if first_iter <= it <= last_iter]
        if values:
            metrics[name] = values[-1] if name == "lr" else math.fsum(values) / len(values)
    return metrics


class EpochEndHook(HookBase):
    """Every `period` iterations, calls `callback(epoch, native_metrics)` (1-based epochs)."""

    def __init__(self, period: int, callback: Callable[[int, dict[str, float]], None], prefix: str) -> None:
        self._period = period
        self._callback = callback
        self._prefix = prefix
        self._started = 0.0

    def before_train(self) -> None:
        self._started = time.perf_counter()

    def after_step(self) -> None:
        done = self.trainer.iter + 1
        if done % self._period:
            return
        metrics = epoch_metrics(self.trainer.storage, done - self._period, self.trainer.iter)
        metrics["epoch_time"] = time.perf_counter() - self._started
        metrics["iteration"] = float(done)
        self._callback(done // self._period, {self._prefix + k: v for k, v in metrics.items()})
        self._started = time.perf_counter()  # the callback's evaluation is not training time


def save_resumable(trainer: DefaultTrainer, file: Path) -> None:
    """Model, optimizer, LR scheduler, grad scaler (AMP) and iteration, in Detectron2's format."""
    checkpointer = DetectionCheckpointer(trainer.model, save_dir=str(file.parent), trainer=trainer)
    checkpointer.save(file.stem, iteration=trainer.iter)


def load_resumable(trainer: DefaultTrainer, file: Path) -> None:
    """Restore what save_resumable wrote; training continues at the iteration after it."""
    checkpointer = DetectionCheckpointer(trainer.model, save_dir=str(file.parent), trainer=trainer)
    checkpointer.load(str(file))  # checkpointables=None: the trainer's state too
    trainer.start_iter = trainer.iter + 1


@contextmanager
def trial_log(log_file: Path) -> Iterator[None]:
    """Detectron2's console logger (set up once per process) plus this trial's own log file."""
    setup_logger(name="detectron2")  # lru_cached by Detectron2: repeated calls add no handlers
    handler = logging.FileHandler(log_file)
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter(LOG_FORMAT, datefmt="%m/%d %H:%M:%S"))
    logger = logging.getLogger("detectron2")
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        handler.close()


def load_dataset_dicts(json_file: Path, image_root: Path, category_ids: Sequence[int]) -> list[dict]:
    """Detectron2 dataset dicts whose category_id is the index into `category_ids`.

    load_coco_json's own mapping would enumerate every category of the file, sorted by id; segtune's
    class index i is category_ids[i] (only categories with annotations, in the dataset's order).
    """
    index = {int(cid): i for i, cid in enumerate(category_ids)}
    dicts = load_coco_json(str(json_file), str(image_root), dataset_name=None)
    for record in dicts:
        annotations = [a for a in record["annotations"] if int(a["category_id"]) in index]
        for a in annotations:
            a["category_id"] = index[int(a["category_id"])]
        record["annotations"] = annotations
    return dicts


@contextmanager
def registered_dataset(
    name: str, json_file: Path, image_root: Path, category_ids: Sequence[int], category_names: Sequence[str]
) -> Iterator[str]:
    """Register a dataset in Detectron2's process-global catalogs for the duration of a trial."""
    DatasetCatalog.register(name, functools.partial(load_dataset_dicts, json_file, image_root, tuple(category_ids)))
    MetadataCatalog.get(name).set(
        thing_classes=list(category_names),
        thing_dataset_id_to_contiguous_id={int(c): i for i, c in enumerate(category_ids)},
        json_file=str(json_file),
        image_root=str(image_root),
        evaluator_type="coco",
    )
    try:
        yield name
    finally:
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


class BatchPredictor:
    """DefaultPredictor's preprocessing (input format, test-time resize) on the training model, in
    batches. Yields (record, Instances on the CPU) with masks pasted at the record's full size."""

    def __init__(self, cfg, model: torch.nn.Module, batch_size: int = 4) -> None:
        self.model = model
        self.batch_size = batch_size
        self.input_format = cfg.INPUT.FORMAT
        self.aug = T.ResizeShortestEdge([cfg.INPUT.MIN_SIZE_TEST, cfg.INPUT.MIN_SIZE_TEST], cfg.INPUT.MAX_SIZE_TEST)

    def _input(self, record: ImageRecord, image: Any = None) -> dict[str, Any]:
        if image is None:
            image = detection_utils.read_image(str(record.path), format=self.input_format)
        image = self.aug.get_transform(image).apply_image(image)
        tensor = torch.as_tensor(image.astype("float32").transpose(2, 0, 1))
        # height/width: the size the outputs (boxes, pasted masks) are scaled to
        return {"image": tensor, "height": record.height, "width": record.width}

    def predict(self, image: Any, record: ImageRecord) -> Any:
        """Instances (on the CPU) of one image already read (`INPUT.FORMAT`, HWC uint8); the caller
        has put the model in eval mode."""
        with torch.no_grad():
            return self.model([self._input(record, image)])[0]["instances"].to("cpu")

    def __call__(self, records: Sequence[ImageRecord]) -> Iterator[tuple[ImageRecord, Any]]:
        was_training = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                for start in range(0, len(records), self.batch_size):
                    batch = records[start : start + self.batch_size]
                    outputs = self.model([self._input(r) for r in batch])
                    for record, output in zip(batch, outputs):
                        yield record, output["instances"].to("cpu")
        finally:
            self.model.train(was_training)
