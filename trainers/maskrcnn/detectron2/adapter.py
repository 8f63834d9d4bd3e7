"""Mask R-CNN through Detectron2 behind the adapter interface.

Detectron2 owns the training loop (`DefaultTrainer.train`); an epoch hook (an `after_step` hook
firing every `iters_per_epoch` iterations) hands control to the trial's callback, which asks for
COCO predictions (`predict_val`) and a resumable checkpoint (`save_checkpoint`).

Hyperparameters: the shared Mask R-CNN vocabulary (`trainers.maskrcnn.params`, Detectron2 key
names, SOLVER.STEPS as fractions of the budget) plus any other key of Detectron2's config, e.g.
MODEL.RPN.POST_NMS_TOPK_TRAIN. Keys a search does not set keep the model config's values.

Models (`context.model`): a model-zoo config name ("COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x.yaml"),
a local YAML file, or "segtune/mask_rcnn_R_18_FPN_small" (built in code; the default without a GPU).
The GPU default, Misc/scratch_mask_rcnn_R_50_FPN_3x_gn.yaml, trains from scratch; the FrozenBN zoo
configs need --weights (from scratch they diverge).
Weights (`context.weights`): None (from scratch; MODEL.BACKBONE.FREEZE_AT is then 0), a local
.pth/.pkl, a "detectron2://" or http(s) URL, or a zoo config name (its published trained weights);
downloads happen in `check_model`, into Detectron2's own cache.

Detectron2 is not on PyPI; the registry imports this module only when the backend is chosen.
"""

from __future__ import annotations

import contextlib
import uuid
import warnings
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import detectron2  # noqa: F401  (not installed -> ImportError -> the registry's ConfigError)
import yaml

from segtune.cocodata.results import ImageRecord, instances_to_coco
from segtune.trainers.base import (
    EpochEnd,
    TimedInference,
    TrainerAdapter,
    TrainingDiverged,
    TrainingShape,
    TrialContext,
    timed_in_eval_mode,
)
from segtune.trainers.maskrcnn.detectron2 import params as d2params
from segtune.trainers.maskrcnn.detectron2 import weights as d2weights
from segtune.trainers.maskrcnn.detectron2 import zoo
from segtune.trainers.maskrcnn.detectron2.config import build_cfg
from segtune.trainers.maskrcnn.params import default_values
from segtune.trainers.pretrained import PretrainedWeights, locate

# What a fine-tuning search trains by default (GPU and CPU alike): the model zoo's R50-FPN Mask R-CNN.
FINETUNE_MODEL = "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x.yaml"

CHECKPOINT_FILE = "model_checkpoint.pth"
CONFIG_FILE = "config.yaml"
_DIVERGED_MARKERS = ("infinite or nan", "inf/nan", "has diverged")


def _is_divergence(exc: BaseException) -> bool:
    # Detectron2: FloatingPointError("Loss became infinite or NaN ..."), FloatingPointError
    # ("Predicted boxes or scores contain Inf/NaN. Training has diverged."), and an
    # AssertionError("Box regression deltas become infinite or NaN!").
    text = str(exc).lower()
    return isinstance(exc, FloatingPointError) or (
        isinstance(exc, AssertionError) and any(m in text for m in _DIVERGED_MARKERS)
    )


class Detectron2MaskRCNN(TrainerAdapter):
    framework = "maskrcnn"
    backend = "detectron2"
    native_prefix = "detectron2/"
    default_model = "Misc/scratch_mask_rcnn_R_50_FPN_3x_gn.yaml"  # R50-FPN with GroupNorm: trains from scratch
    default_model_cpu = zoo.SMALL_MODEL
    packages = ("detectron2", "torchvision")
    default_epochs_cpu = 12  # an epoch costs ~6x a YOLO demo epoch on CPU; AP rises within a few
    seed_key = "SEED"
    options = frozenset({"iters_per_epoch"})  # an "epoch" is a number of iterations (--iters-per-epoch)
    reuse_process = False  # DatasetCatalog and setup_logger keep per-process state (DESIGN-NOTES)

    def __init__(self, params: Mapping[str, Any], context: TrialContext) -> None:
        super().__init__(params, context)
        self._trainer = None  # the live SegtuneTrainer while train() runs
        self._cfg = None

    @property
    def amp_enabled(self) -> bool:
        return bool(self._cfg is not None and self._cfg.SOLVER.AMP.ENABLED and self.context.use_cuda)

    # ---- checks in the driver ----------------------------------------------------------------
    @classmethod
    def param_names(cls) -> frozenset[str]:
        return d2params.param_names()

    @classmethod
    def default_params(cls, keys: Iterable[str], training: TrainingShape | None = None) -> dict[str, Any]:
        return default_values(keys)  # the shared vocabulary's defaults are Detectron2's own

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> None:
        d2params.normalise_params(params)

    @classmethod
    def pretrained_weights(cls, model: str, has_gpu: bool) -> PretrainedWeights:
        """The model zoo's trained weights of a zoo config (a COCO instance-segmentation one by default), in
        iopath's cache, where Detectron2's checkpointer downloads them."""
        model = model or FINETUNE_MODEL
        name = model.removeprefix("configs/").removesuffix(".yaml")
        url = zoo.zoo_weight_urls().get(name)
        if url is None:
            return PretrainedWeights(model, None, why_not=f"the Detectron2 model zoo publishes no weights for {model}")
        cache = d2weights.cached_path(url)
        found, can_download, why_not = locate(cache, url)
        return PretrainedWeights(model, url.split("/")[-1], found, cache, url, can_download, why_not)

    @classmethod
    def fetch_pretrained(cls, weights: PretrainedWeights) -> str:
        """Detectron2's own download (PathManager) into iopath's cache; trials load the local file."""
        return d2weights.resolve_weights(str(weights.found_at or weights.url))

    @classmethod
    def check_model(cls, model: str, weights: str | None) -> None:
        """Config found and loadable, weights present (downloaded now if needed) and loadable."""
        cfg = zoo.load_model_config(zoo.resolve_model(model))
        d2weights.resolve_weights(weights)
        if not weights and cfg.MODEL.RESNETS.NORM == "FrozenBN" and "build_resnet" in cfg.MODEL.BACKBONE.NAME:
            warnings.warn(
                f"{d2params.WHO}: {model} uses FrozenBN, which diverges when trained from scratch; pass "
                f"--weights or use a config with trainable norm such as {zoo.SMALL_MODEL} or "
                "Misc/scratch_mask_rcnn_R_50_FPN_3x_gn.yaml",
                stacklevel=2,
            )

    @classmethod
    def resolve_model(cls, model: str, weights: str | None) -> tuple[str, str | None]:
        """Checked (weights downloaded into Detectron2's cache); a local config file made absolute,
        since trials run in another working directory. Zoo and URL names stay names: each trial
        finds them in its own detectron2 install and download cache."""
        model, weights = super().resolve_model(model or cls.default_model, weights)
        local = Path(model).expanduser()
        if local.is_file():
            model = str(local.resolve())
        return model, weights

    # ---- one trial -----------------------------------------------------------------------------
    def train(self, on_epoch_end: EpochEnd, resume_from: Path | None = None) -> None:
        from detectron2.utils.env import seed_all_rng

        from segtune.trainers.maskrcnn.detectron2 import hooks

        ctx = self.context
        data = ctx.dataset
        train_name = f"segtune_{data.name}_train_{uuid.uuid4().hex[:8]}"  # DatasetCatalog is per process
        plan = build_cfg(
            self.params, ctx, train_dataset=train_name, weights=d2weights.resolve_weights(ctx.weights, check=False)
        )
        cfg = self._cfg = plan.cfg
        out = Path(cfg.OUTPUT_DIR)
        out.mkdir(parents=True, exist_ok=True)
        (out / CONFIG_FILE).write_text(cfg.dump())
        epoch_hook = hooks.EpochEndHook(plan.iters_per_epoch, on_epoch_end, self.native_prefix)
        with (
            hooks.trial_log(out / "log.txt"),
            hooks.registered_dataset(
                train_name, data.train_json, data.train_images, data.category_ids, data.category_names
            ),
        ):
            seed_all_rng(cfg.SEED)
            trainer = self._trainer = hooks.SegtuneTrainer(cfg, [epoch_hook])
            if resume_from is not None:
                hooks.load_resumable(trainer, Path(resume_from) / CHECKPOINT_FILE)
            else:
                trainer.resume_or_load(resume=False)  # MODEL.WEIGHTS, or from scratch when ""
            if trainer.start_iter >= trainer.max_iter:
                return  # the checkpoint is of the final epoch
            try:
                trainer.train()
            except (FloatingPointError, AssertionError) as exc:
                if _is_divergence(exc):
                    raise TrainingDiverged(f"detectron2: {exc}".splitlines()[0]) from exc
                raise

    def predict_val(self) -> list[dict[str, Any]]:
        from segtune.trainers.maskrcnn.detectron2.hooks import BatchPredictor

        if self._trainer is None:
            raise RuntimeError("predict_val() needs a model: call it from the on_epoch_end callback of train()")
        data = self.context.dataset
        predictor = BatchPredictor(self._cfg, self._trainer.model)
        predictions: list[dict[str, Any]] = []
        for record, instances in predictor(self.val_images):
            masks = instances.pred_masks
            if masks.dtype.is_floating_point:
                masks = masks >= 0.5
            predictions += instances_to_coco(
                record.image_id,
                instances.pred_boxes.tensor.numpy(),
                instances.scores.numpy(),
                instances.pred_classes.numpy(),
                masks.numpy(),
                data.category_ids,
            )
        return predictions

    @contextlib.contextmanager
    def single_image_inference(self, image: ImageRecord) -> Iterator[TimedInference]:
        from detectron2.data import detection_utils

        from segtune.trainers.maskrcnn.detectron2.hooks import BatchPredictor

        if self._trainer is None:
            raise RuntimeError(
                "single_image_inference() needs a model: call it from the on_epoch_end callback of train()"
            )
        predictor = BatchPredictor(self._cfg, self._trainer.model, batch_size=1)
        pixels = detection_utils.read_image(str(image.path), format=predictor.input_format)

        def run() -> int:
            instances = predictor.predict(pixels, image)
            masks = instances.pred_masks
            binary = masks >= 0.5 if masks.dtype.is_floating_point else masks
            outputs = (
                instances.pred_boxes.tensor.numpy(),
                instances.scores.numpy(),
                instances.pred_classes.numpy(),
                binary.numpy(),
            )
            return len(outputs[0])

        with timed_in_eval_mode(run, self._trainer.model) as timed:
            yield timed

    def save_checkpoint(self, directory: Path) -> None:
        from segtune.trainers.maskrcnn.detectron2.hooks import save_resumable

        if self._trainer is None:
            raise RuntimeError("save_checkpoint() needs a running train()")
        directory = Path(directory)
        save_resumable(self._trainer, directory / CHECKPOINT_FILE)
        (directory / CONFIG_FILE).write_text(self._cfg.dump())

    # ---- after the search ----------------------------------------------------------------------
    @classmethod
    def weights_in_checkpoint(cls, directory: Path) -> Path:
        return Path(directory) / CHECKPOINT_FILE

    @classmethod
    def native_config(cls, params: Mapping[str, Any], context: TrialContext) -> dict[str, Any]:
        """The trial's full Detectron2 config (cfg.dump()). SOLVER.OPTIMIZER, segtune's own key, is
        kept only for AdamW: plain Detectron2 builds SGD and refuses keys it does not know."""
        weights = d2weights.resolve_weights(context.weights, download=False, check=False)  # no network
        plan = build_cfg(params, context, train_dataset=f"{context.dataset.name}_train", weights=weights)
        config = yaml.safe_load(plan.cfg.dump())
        if config["SOLVER"].get("OPTIMIZER") == "SGD":
            del config["SOLVER"]["OPTIMIZER"]
        return config
