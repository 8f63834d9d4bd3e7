"""Ultralytics YOLO11-seg behind the adapter interface.

Ultralytics owns the training loop (`model.train`); this adapter hooks `on_fit_epoch_end`, where
Ultralytics has just written `last.pt`, and hands control to the trial's callback. Ultralytics'
own validation runs only when the search metric is one of its validation numbers (e.g.
`yolo/val/seg_loss`); otherwise the trial's COCO evaluation is the one pass over the val set.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from segtune.cocodata.results import ImageRecord, instances_to_coco
from segtune.core.errors import ConfigError
from segtune.trainers.base import (
    EpochEnd,
    ExportFailed,
    TimedInference,
    TrainerAdapter,
    TrainingDiverged,
    TrainingShape,
    TrialContext,
)
from segtune.trainers.pretrained import PretrainedWeights, locate
from segtune.trainers.yolo.dataset_yaml import LAYOUT

# Arguments the trial sets itself; a search space may not touch them.
_CONTROLLED = frozenset(
    {
        "data",
        "epochs",
        "device",
        "workers",
        "project",
        "name",
        "exist_ok",
        "resume",
        "model",
        "mode",
        "task",
        "save_dir",
        "plots",
        "val",
        "save",
        "verbose",
        "cfg",
        "tracker",
        "source",
        "pretrained",
        "time",
    }
)
_CHECKPOINT_FILE = "last.pt"
_STATE_FILE = "state.json"
_NATIVE_METRICS = frozenset(
    [f"{split}/{loss}_loss" for split in ("train", "val") for loss in ("box", "seg", "cls", "dfl", "sem")]
    + [f"{m}({t})" for m in ("precision", "recall", "mAP50", "mAP50-95") for t in ("B", "M")]
    + ["lr/pg0", "lr/pg1", "lr/pg2", "epoch_time"]
)
# The native metrics that only Ultralytics' own validation produces.
_VALIDATION_METRICS = frozenset(name for name in _NATIVE_METRICS if name.startswith("val/") or "(" in name)


def _ultralytics_defaults() -> dict[str, Any]:
    from ultralytics.cfg import DEFAULT_CFG_DICT

    return DEFAULT_CFG_DICT


def auto_optimizer(defaults: Mapping[str, Any], training: TrainingShape | None) -> dict[str, Any]:
    """What Ultralytics' optimizer 'auto' picks (BaseTrainer.build_optimizer): AdamW with a learning
    rate fitted to the number of classes for a training of at most 10,000 optimizer steps (counted at
    max(batch, nbs) images, as Ultralytics counts them): every CPU search and most fine-tunings on
    small data; beyond that an SGD (MuSGD in recent Ultralytics, which the spaces do not offer: SGD)
    at lr 0.01, momentum 0.9. Unknown length: SGD with the default lr0 and momentum."""
    if training is None:
        return {"optimizer": "SGD"}
    batch = int(training.fixed.get("batch") or defaults.get("batch") or 16)
    nbs = int(training.fixed.get("nbs") or defaults.get("nbs") or 64)
    iterations = training.max_epochs * math.ceil(max(1, training.num_train_images) / max(1, batch, nbs))
    if iterations > 10_000:
        return {"optimizer": "SGD", "lr0": 0.01, "momentum": 0.9}
    return {"optimizer": "AdamW", "lr0": round(0.002 * 5 / (4 + training.num_classes), 6), "momentum": 0.9}


def _assets_release() -> str:
    """The release of ultralytics/assets that Ultralytics downloads its weights from."""
    import inspect

    from ultralytics.utils.downloads import attempt_download_asset

    return str(inspect.signature(attempt_download_asset).parameters["release"].default)


def _is_yolo_weights(path: str) -> bool:
    return path.endswith((".pt", ".pth"))


class YoloAdapter(TrainerAdapter):
    framework = "yolo"
    native_prefix = "yolo/"
    default_model = "yolo11n-seg.yaml"
    # nano and small, from their YAMLs (from scratch); on a CPU both train the demo set in minutes
    model_choices = model_choices_cpu = ("yolo11n-seg.yaml", "yolo11s-seg.yaml")
    packages = ("ultralytics",)
    # Ultralytics restores its global torch settings and closes its TensorBoard writer after every
    # run, even a stopped one (tests/test_yolo_adapter.py runs trials back to back in one process).
    reuse_process = True

    def __init__(self, params: Mapping[str, Any], context: TrialContext) -> None:
        # Before Ultralytics is first imported (it checks the network once, at import): a trial
        # never downloads, the driver resolved every file, and AMP's check must not fetch a model.
        os.environ.setdefault("YOLO_OFFLINE", "1")
        super().__init__(params, context)
        self._trainer = None  # the live ultralytics trainer, set once training starts

    # ---- checks in the driver ----------------------------------------------------------------
    @classmethod
    def param_names(cls) -> frozenset[str]:
        return frozenset(_ultralytics_defaults()) - _CONTROLLED

    @classmethod
    def default_params(cls, keys: Iterable[str], training: TrainingShape | None = None) -> dict[str, Any]:
        defaults = dict(_ultralytics_defaults())
        if defaults.get("optimizer") == "auto":
            # 'auto' is refused in a search (it ignores lr0 and momentum): what it would pick instead.
            defaults.update(auto_optimizer(defaults, training))
        if defaults.get("freeze") is None:
            defaults["freeze"] = 0  # None: nothing frozen, as 0 (a search space cannot hold None)
        return {k: defaults[k] for k in keys if defaults.get(k) is not None}

    @classmethod
    def pretrained_weights(cls, model: str, has_gpu: bool) -> PretrainedWeights:
        """Ultralytics' COCO weights of a model YAML of its own (yolo11n-seg.yaml -> yolo11n-seg.pt),
        looked for where Ultralytics looks: the path as given (the working directory), then
        SETTINGS["weights_dir"]; a .pt model is itself the starting point."""
        model = model or cls.default_model  # nano on a GPU and on a CPU alike
        if _is_yolo_weights(model):
            return PretrainedWeights(model, model, in_model=True)
        from ultralytics.utils import SETTINGS
        from ultralytics.utils.downloads import GITHUB_ASSETS_NAMES, GITHUB_ASSETS_REPO

        name = Path(model).stem + ".pt"
        if name not in GITHUB_ASSETS_NAMES:
            return PretrainedWeights(model, None, why_not=f"Ultralytics publishes no weights for {Path(model).name}")
        cache = (Path(SETTINGS["weights_dir"]).expanduser() / name).absolute()
        url = f"https://github.com/{GITHUB_ASSETS_REPO}/releases/download/{_assets_release()}/{name}"
        found, can_download, why_not = locate(cache, url, candidates=(Path(name),))
        return PretrainedWeights(model, name, found, cache, url, can_download, why_not)

    @classmethod
    def fetch_pretrained(cls, weights: PretrainedWeights) -> str:
        """The file found, or Ultralytics' own download (attempt_download_asset) into SETTINGS["weights_dir"].
        A file found is returned as it is: `resolve_model` loads it once, before any trial, so that a
        corrupt file fails there (loading it here too would read it twice)."""
        if weights.found_at is not None:
            return str(weights.found_at)
        assert weights.cache_path is not None
        weights.cache_path.parent.mkdir(parents=True, exist_ok=True)
        return cls._resolve_weights(str(weights.cache_path))

    @classmethod
    def native_metric_names(cls) -> frozenset[str]:
        return frozenset(cls.native_prefix + name for name in _NATIVE_METRICS)

    @classmethod
    def data_layouts(cls):
        from segtune.trainers.yolo.layout import ULTRALYTICS_LAYOUT

        return (ULTRALYTICS_LAYOUT,)

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> None:
        super().check_params(params)
        if params.get("optimizer") == "auto":
            # 'auto' picks its own lr and momentum and silently ignores the searched lr0/momentum.
            raise ConfigError(
                "yolo: optimizer 'auto' ignores lr0 and momentum; search explicit optimizers (SGD, AdamW, ...)"
            )

    @classmethod
    def check_model(cls, model: str, weights: str | None) -> None:
        cls.resolve_model(model, weights)

    @classmethod
    def resolve_model(cls, model: str, weights: str | None) -> tuple[str, str | None]:
        """Absolute paths the trials can use offline; a download, if needed, happens once, here."""
        model = model or cls.default_model
        if model.endswith((".yaml", ".yml")):
            from ultralytics.nn.tasks import yaml_model_load

            if Path(model).expanduser().is_file():
                model = str(Path(model).expanduser().resolve())
            try:  # also resolves Ultralytics' own names with a scale, e.g. yolo11n-seg.yaml
                yaml_model_load(model)
            except Exception:
                raise ConfigError(
                    f"yolo: model config {model!r} not found; pass a YAML path or an Ultralytics name "
                    f"like yolo11n-seg.yaml"
                ) from None
        elif _is_yolo_weights(model):
            model = cls._resolve_weights(model)
        else:
            raise ConfigError(f"yolo: --model {model!r} is neither a model YAML nor a .pt weights file")
        if weights:
            weights = cls._resolve_weights(weights)
        return model, weights

    @staticmethod
    def _resolve_weights(path: str) -> str:
        local = Path(path).expanduser()
        if not local.exists():
            from ultralytics.utils import SETTINGS, is_online
            from ultralytics.utils.downloads import GITHUB_ASSETS_NAMES, attempt_download_asset

            cached = Path(SETTINGS["weights_dir"]) / local.name
            if cached.exists():
                local = cached
            elif local.name not in GITHUB_ASSETS_NAMES:
                raise ConfigError(f"yolo: weights file {path} does not exist; check the path")
            elif not is_online():
                raise ConfigError(
                    f"yolo: {path} needs a download and this machine is offline; pass a local weights file "
                    f"or train from scratch with --model {Path(path).stem}.yaml --weights none"
                )
            else:
                local = Path(attempt_download_asset(str(cached)))
        try:
            from ultralytics.nn.tasks import load_checkpoint

            load_checkpoint(str(local))
        except Exception as exc:
            raise ConfigError(
                f"yolo: weights file {local} cannot be loaded ({type(exc).__name__}); "
                f"it is corrupt or not an Ultralytics checkpoint"
            ) from None
        return str(local.resolve())

    # ---- one trial -----------------------------------------------------------------------------
    def _train_args(self) -> dict[str, Any]:
        ctx = self.context
        args = {
            "optimizer": "SGD",
            "patience": 0,  # ASHA decides when to stop; Ultralytics' early stopping would race it
            "seed": 0,
            "deterministic": True,
            **self.params,
            "data": str(ctx.dataset.layout(LAYOUT)),
            "epochs": ctx.max_epochs,
            "device": "0" if ctx.use_cuda else "cpu",
            "workers": ctx.workers,
            "project": str(ctx.output_dir),
            "name": "ultralytics",
            "save_dir": str(ctx.output_dir / "ultralytics"),
            "exist_ok": True,
            "plots": False,  # plots download a font and cost time every epoch
            "val": True,  # every epoch; CocoOnlyValTrainer makes it a no-op when the metric is COCO's
            "verbose": False,
        }
        # AMP only on CUDA: off CUDA it is useless, and its check downloads a model.
        args["amp"] = bool(self.params.get("amp", True)) and ctx.use_cuda
        return args

    @property
    def framework_validates(self) -> bool:
        """Whether Ultralytics validates each epoch: only when the search metric comes from it."""
        metric = self.context.metric
        return metric.startswith(self.native_prefix) and metric.removeprefix(self.native_prefix) in _VALIDATION_METRICS

    @property
    def amp_enabled(self) -> bool:
        return bool(self._trainer is not None and self._trainer.amp)

    def _build_model(self, resume_checkpoint: Path | None):
        from ultralytics import YOLO

        self.record_milestone("framework_imported")
        if resume_checkpoint is not None:
            model = YOLO(str(resume_checkpoint), task="segment")
        else:
            model = YOLO(self.context.model or self.default_model, task="segment")
            if self.context.weights:
                model.load(self.context.weights)
        self.record_milestone("model_built")
        return model

    def train(self, on_epoch_end: EpochEnd, resume_from: Path | None = None) -> None:
        resume_checkpoint = None
        if resume_from is not None:
            resume_checkpoint = self._stage_resume(resume_from)
            if resume_checkpoint is None:
                return  # the checkpoint is of the final epoch: nothing left to train
        model = self._build_model(resume_checkpoint)
        model.add_callback("on_pretrain_routine_start", _drop_raytune_callback)
        _add_tensorboard_callbacks(model)
        model.add_callback("on_pretrain_routine_start", self._remember_trainer)
        # Data loaders built (and images cached), model on its device, optimizer ready:
        model.add_callback("on_pretrain_routine_end", lambda trainer: self.record_milestone("data_ready"))
        model.add_callback("on_train_batch_end", lambda trainer: self.record_milestone("first_batch"))
        model.add_callback("on_fit_epoch_end", lambda trainer: self._epoch_end(trainer, on_epoch_end))
        args = self._train_args()
        if resume_checkpoint is not None:
            args["resume"] = str(resume_checkpoint)
        trainer = None
        if not self.framework_validates:
            from segtune.trainers.yolo.single_pass import CocoOnlyValTrainer

            trainer = CocoOnlyValTrainer
        try:
            model.train(trainer=trainer, **args)
        except RuntimeError as exc:
            if "NaN" in str(exc) or "Inf" in str(exc):  # Ultralytics' NaN recovery gave up
                raise TrainingDiverged(f"ultralytics: {exc}") from exc
            raise
        except FileNotFoundError:
            # After its last epoch Ultralytics reloads last.pt, which save_checkpoint moved into the
            # trial's checkpoint (a trial the scheduler stops at its last report never gets here).
            if not self._trained_every_epoch():
                raise

    def _trained_every_epoch(self) -> bool:
        trainer = self._trainer
        return trainer is not None and trainer.epoch + 1 >= trainer.epochs and not Path(trainer.last).exists()

    def _stage_resume(self, resume_from: Path) -> Path | None:
        """Copy the checkpoint where Ultralytics writes its own, so resume continues in place."""
        state = json.loads((resume_from / _STATE_FILE).read_text())
        if state["epoch"] >= self.context.max_epochs:
            return None
        target = self.context.output_dir / "ultralytics" / "weights" / _CHECKPOINT_FILE
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(resume_from / _CHECKPOINT_FILE, target)
        return target

    def _remember_trainer(self, trainer) -> None:
        self._trainer = trainer

    def _epoch_end(self, trainer, on_epoch_end: EpochEnd) -> None:
        losses = trainer.label_loss_items(trainer.tloss, prefix="train")
        bad = {k: v for k, v in losses.items() if not math.isfinite(float(v))}
        if bad:
            raise TrainingDiverged(f"loss is not finite at epoch {trainer.epoch + 1}: {bad}")
        native = {**losses, **trainer.lr, **{k.replace("metrics/", ""): v for k, v in trainer.metrics.items()}}
        native = {f"{self.native_prefix}{k}": float(v) for k, v in native.items()}
        native[f"{self.native_prefix}epoch_time"] = float(getattr(trainer, "epoch_time", 0.0) or 0.0)
        on_epoch_end(trainer.epoch + 1, native)

    def predict_val(self) -> list[dict[str, Any]]:
        from ultralytics.models.yolo.segment import SegmentationPredictor

        trainer = self._trainer
        model = trainer.ema.ema if trainer.ema else trainer.model
        images = self.val_images
        predictor = SegmentationPredictor(overrides=self._predictor_settings(batch=8))
        predictor.setup_model(model, verbose=False)  # deep-copies: the training model is untouched
        predictions: list[dict[str, Any]] = []
        by_path = {str(r.path): r for r in images}
        for result in predictor(source=[str(r.path) for r in images], stream=True):
            record = by_path[str(result.path)]
            if result.masks is None or len(result.boxes) == 0:
                continue
            masks = result.masks.data.cpu().numpy() > 0.5
            predictions += instances_to_coco(
                record.image_id,
                result.boxes.xyxy.cpu().numpy(),
                result.boxes.conf.cpu().numpy(),
                result.boxes.cls.cpu().numpy().astype(int),
                masks,
                self.context.dataset.category_ids,
            )
        return predictions

    def _predictor_settings(self, batch: int) -> dict[str, Any]:
        """How the trial predicts (evaluation and timed inference alike)."""
        trainer = self._trainer
        return {
            "conf": 0.001,  # COCO AP counts low-confidence detections too
            "iou": 0.7,
            "imgsz": trainer.args.imgsz,
            "max_det": self.context.max_detections,
            "retina_masks": True,  # masks at the original resolution, as COCO evaluates them
            "device": trainer.args.device,
            "quantize": 16 if self.context.use_cuda else None,
            "batch": batch,
            "verbose": False,
            "save": False,
        }

    @contextlib.contextmanager
    def single_image_inference(self, image: ImageRecord) -> Iterator[TimedInference]:
        from ultralytics.models.yolo.segment import SegmentationPredictor
        from ultralytics.utils.patches import imread

        trainer = self._trainer
        model = trainer.ema.ema if trainer.ema else trainer.model
        predictor = SegmentationPredictor(overrides=self._predictor_settings(batch=1))
        predictor.setup_model(model, verbose=False)  # a fused copy, as Ultralytics predicts
        pixels = imread(str(image.path))  # BGR, as Ultralytics reads an image file

        def run() -> int:
            result = predictor(source=pixels, stream=False)[0]
            if result.masks is None:
                return 0
            boxes = result.boxes  # into host memory, as predict_val hands them on
            outputs = (
                boxes.xyxy.cpu().numpy(),
                boxes.conf.cpu().numpy(),
                boxes.cls.cpu().numpy(),
                result.masks.data.cpu().numpy() > 0.5,
            )
            return len(outputs[0])

        network = predictor.model
        backend = getattr(network, "backend", None)  # Ultralytics 8.4 keeps the torch model in a plain object
        if hasattr(getattr(backend, "model", None), "parameters"):
            network = backend.model
        yield TimedInference(run, network, sum(p.numel() for p in model.parameters()))

    def save_checkpoint(self, directory: Path) -> None:
        # Moved, not copied: Ray keeps this trial's best and latest checkpoints, and Ultralytics'
        # own weights/ copies (last.pt, best.pt by its own fitness) would double the disk per trial.
        # Without them Ultralytics skips its final re-validation, and a NaN ends the trial (diverged)
        # instead of reloading last.pt.
        shutil.move(self._trainer.last, Path(directory) / _CHECKPOINT_FILE)
        Path(self._trainer.best).unlink(missing_ok=True)
        # The epoch beside the weights: deciding whether to resume needs no unpickling.
        (Path(directory) / _STATE_FILE).write_text(json.dumps({"epoch": self._trainer.epoch + 1}))

    # ---- after the search ----------------------------------------------------------------------
    @classmethod
    def weights_in_checkpoint(cls, directory: Path) -> Path:
        return Path(directory) / _CHECKPOINT_FILE

    @classmethod
    def native_config(cls, params: Mapping[str, Any], context: TrialContext) -> dict[str, Any]:
        adapter = cls(params, context)
        args = adapter._train_args()
        for key in ("project", "name", "save_dir", "exist_ok", "verbose"):
            args.pop(key, None)
        args["model"] = context.model or cls.default_model
        return args

    @classmethod
    def inference_files(cls, weights: Path, out: Path, params: Mapping[str, Any], onnx: bool) -> list[Path]:
        """best.pt without optimizer state (Ultralytics' strip_optimizer, EMA weights) and its ONNX
        export through Ultralytics' exporter."""
        import importlib.util
        import logging

        os.environ.setdefault("YOLO_OFFLINE", "1")
        from ultralytics import YOLO
        from ultralytics.utils import LOGGER
        from ultralytics.utils.torch_utils import strip_optimizer

        level = LOGGER.level
        LOGGER.setLevel(logging.WARNING)  # the exporter's banner and tips are noise here
        try:
            best = Path(out) / "best.pt"
            strip_optimizer(weights, str(best))
            if not best.is_file():
                raise ConfigError(f"{weights} is not an Ultralytics checkpoint (strip_optimizer refused it)")
            files = [best]
            if onnx:
                # Simplifying needs onnxslim and onnxruntime; Ultralytics would try to pip-install them.
                simplify = all(importlib.util.find_spec(m) is not None for m in ("onnxslim", "onnxruntime"))
                imgsz = int(params.get("imgsz", 640))
                try:
                    exported = YOLO(str(best), task="segment").export(
                        format="onnx", imgsz=imgsz, simplify=simplify, dynamic=False, device="cpu", verbose=False
                    )
                except Exception as exc:  # best.pt and the rest stand: report, do not crash
                    raise ExportFailed(
                        f"ONNX export failed ({type(exc).__name__}: {exc}); rerun with --no-onnx"
                    ) from exc
                files.append(Path(exported))
        finally:
            LOGGER.setLevel(level)
        return files


def _add_tensorboard_callbacks(model) -> None:
    """Ultralytics' own TensorBoard curves (losses, lr, its mAP) in the trial's ultralytics/ folder,
    so they show under the experiment's --logdir. Registered per model, not through Ultralytics'
    global settings file, which belongs to the user. Added before our epoch hook: an epoch is
    written before it is reported, and ASHA may stop the trial at the report."""
    from ultralytics.utils.callbacks import tensorboard

    for event, func in tensorboard.callbacks.items():  # {} when tensorboard is not installed
        if event != "on_train_start":  # skips the model-graph trace: slow, and not a curve
            model.add_callback(event, func)


def _drop_raytune_callback(trainer) -> None:
    """Ultralytics' own Ray Tune callback reports a second metrics dict inside our trials: remove it."""
    for event, funcs in trainer.callbacks.items():
        trainer.callbacks[event] = [f for f in funcs if "raytune" not in getattr(f, "__module__", "")]
