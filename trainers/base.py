"""The interface every framework adapter implements, and what a trial hands it.

Lifecycle of one trial (driven by `segtune.runners.trial`):
    adapter = Adapter(params, context)          # build from a config; validate it
    adapter.train(on_epoch_end, resume_from)    # framework loop; after each epoch-sized unit it
        -> on_epoch_end(epoch, native_metrics)  #   calls back; the callback asks for
           adapter.predict_val()                #   COCO predictions on the val split and
           adapter.save_checkpoint(dir)         #   a resumable checkpoint, then reports;
           adapter.single_image_inference(img) #   now and then the trial times one inference
"""

from __future__ import annotations

import contextlib
import functools
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from segtune.cocodata.results import ImageRecord, list_images
from segtune.core.errors import ConfigError
from segtune.core.record import PreparedDataset, RunSettings
from segtune.trainers.pretrained import PretrainedWeights

if TYPE_CHECKING:
    from segtune.cocodata.prepare import DataLayout

# epoch (1-based, epochs completed so far) and the framework's own numbers (losses, lr, native mAP)
EpochEnd = Callable[[int, dict[str, float]], None]


class TrainingDiverged(RuntimeError):
    """The loss became NaN or Inf: this trial ends with the reason recorded, the search goes on."""


class ExportFailed(RuntimeError):
    """An optional export file (e.g. ONNX) could not be made; everything else was exported."""


@dataclass(frozen=True)
class TimedInference:
    """One val image, ready to be run end to end again and again (what `runners/trial/cost.py` times).

    `run()` is the same for every framework: from the image decoded in memory (read from disk once,
    before), through the framework's preprocessing (resize to the trial's test size, normalise), the
    network at batch 1 and its postprocessing (NMS, masks pasted at the image's full resolution and
    thresholded), to boxes, scores, classes and binary masks as numpy arrays in host memory; with
    the settings of `predict_val` (score threshold, max detections, precision). It returns the
    number of instances. COCO encoding (RLE) is evaluation, not inference: not included.
    """

    run: Callable[[], int]
    network: Any  # the torch module `run` calls, as it runs it (its weights count as inference memory)
    parameters: int  # parameters of the trained model (before inference-time changes such as Conv+BN fusing)


@dataclass(frozen=True)
class TrainingShape:
    """What a search's trials will train on: for defaults that depend on it."""

    num_train_images: int
    num_classes: int
    max_epochs: int
    fixed: Mapping[str, Any] = field(default_factory=dict)  # the search space's fixed values


@contextlib.contextmanager
def timed_in_eval_mode(run: Callable[[], int], model: Any) -> Iterator[TimedInference]:
    """`run` as a TimedInference of a torch `model` switched to eval mode; its mode is restored after."""
    was_training = model.training
    model.eval()
    try:
        yield TimedInference(run, model, sum(p.numel() for p in model.parameters()))
    finally:
        model.train(was_training)


@dataclass(frozen=True)
class TrialContext:
    """Everything about a trial that is not a searched hyperparameter."""

    dataset: PreparedDataset
    output_dir: Path  # the trial's own directory; never the cwd (Ray changes it)
    max_epochs: int
    device: str  # "cpu" or "cuda:0" (Ray narrows CUDA_VISIBLE_DEVICES to the trial's GPUs)
    workers: int = 0  # data-loader worker processes
    model: str = ""  # model YAML / config name / architecture; "" = the adapter's default
    weights: str | None = None  # weights file or model-zoo name to start from; None = from scratch
    max_detections: int = 100  # per image, at least the evaluator's maxDets
    options: Mapping[str, Any] = field(default_factory=dict)  # the adapter's own command-line options
    # The search metric. A framework that validates on its own (a second pass over the val set
    # besides the trial's COCO evaluation) need do so only when this is one of its own numbers.
    metric: str = ""

    @property
    def use_cuda(self) -> bool:
        return self.device.startswith("cuda")

    @classmethod
    def for_experiment(cls, settings: RunSettings, output_dir: Path, device: str) -> TrialContext:
        """The context of a trial (or of an export) of the single-framework experiment `settings`
        describes (a trial of a search over several: `core.choice.for_trial` gives its settings)."""
        entry = settings.sole_framework
        return cls(
            dataset=settings.data,
            output_dir=output_dir,
            max_epochs=settings.budget.max_epochs,
            device=device,
            workers=settings.resources.workers,
            model=entry.model,
            weights=entry.weights,
            max_detections=settings.resources.max_detections,
            options=dict(settings.options),
            metric=settings.objective.metric,
        )


class TrainerAdapter(ABC):
    """Train one configuration of one framework and answer for it in COCO terms: the extension point.

    A framework joins segtune with one subclass, registered by name in `segtune.trainers.registry`.
    The driver uses the class methods before any trial starts (keys, defaults, model, data layouts);
    each trial builds one instance in its worker process and calls `train`, which calls back after
    every epoch; the callback asks for `predict_val` (scored by segtune's one COCO evaluator),
    `save_checkpoint` and now and then `single_image_inference`. The framework library is imported
    inside the adapter's methods only, so that users of one framework never need another.

    Args:
        params: one configuration: the searched and fixed hyperparameters under the framework's own
            names (`param_names`), including `seed_key`. Checked by `check_params`.
        context: everything about the trial that is not a hyperparameter (data, output directory,
            epochs, device, model, weights).

    Raises:
        ConfigError: a key the framework does not have, or a value it refuses (one line, with the fix).

    Example:
        A minimal adapter (see `trainers/yolo/adapter.py` for a complete one)::

            class MyAdapter(TrainerAdapter):
                framework = "mine"
                native_prefix = "mine/"
                default_model = "mine-small.yaml"

                @classmethod
                def param_names(cls):
                    return frozenset({"lr", "seed"})

                def train(self, on_epoch_end, resume_from=None):
                    for epoch in range(1, self.context.max_epochs + 1):
                        loss = ...  # one epoch of the framework's own loop
                        on_epoch_end(epoch, {"mine/loss": loss})

                ...  # predict_val, single_image_inference, save_checkpoint, weights_in_checkpoint
    """

    framework: ClassVar[str]  # registry name, e.g. "yolo", "maskrcnn"
    backend: ClassVar[str] = ""  # e.g. "torchvision", "detectron2"; "" when there is one
    native_prefix: ClassVar[str]  # prefix of the framework's own metrics, e.g. "yolo/"
    default_model: ClassVar[str]
    default_model_cpu: ClassVar[str] = ""  # a smaller default when there is no GPU ("" = default_model)
    default_epochs_cpu: ClassVar[int] = 30  # --max-epochs default without a GPU (100 with GPUs)
    # The model sizes a search over several frameworks lets this framework choose from, with GPUs
    # and without (empty: the default model alone).
    model_choices: ClassVar[tuple[str, ...]] = ()
    model_choices_cpu: ClassVar[tuple[str, ...]] = ()
    packages: ClassVar[tuple[str, ...]] = ()  # the framework's PyPI names, for versions in model cards
    seed_key: ClassVar[str] = "seed"  # the params key that seeds training (recorded in every config)
    # Adapter-specific command-line options it understands (names of `runners/command/parser.py` options,
    # e.g. "iters_per_epoch"); the runner refuses the others for this adapter.
    options: ClassVar[frozenset[str]] = frozenset()

    # Whether one process may run several trials one after another (Ray's `reuse_actors`): the
    # framework leaves no global state (registries, loggers, handlers) that a next trial trips on.
    reuse_process: ClassVar[bool] = False

    def __init__(self, params: Mapping[str, Any], context: TrialContext) -> None:
        self.check_params(params)
        self.params = dict(params)
        self.context = context
        self.milestones: dict[str, float] = {}  # start-up steps -> time.time() (see record_milestone)

    # ---- what the driver checks before any trial starts -------------------------------------
    @classmethod
    @abstractmethod
    def param_names(cls) -> frozenset[str]:
        """Every hyperparameter key this adapter accepts (the framework's own argument names)."""

    @classmethod
    def check_params(cls, params: Mapping[str, Any]) -> None:
        """Refuse a configuration the framework cannot train, before anything starts.

        Args:
            params: a configuration (values may be the first value of each searched range).

        Raises:
            ConfigError: an unknown key (the base check) or a refused value (subclasses add theirs).
        """
        unknown = sorted(set(params) - cls.param_names())
        if unknown:
            raise ConfigError(
                f"{cls.display_name()} has no parameter {', '.join(map(repr, unknown))}; "
                f"valid keys: {', '.join(sorted(cls.param_names()))}"
            )

    @classmethod
    def default_params(cls, keys: Iterable[str], training: TrainingShape | None = None) -> dict[str, Any]:
        """The framework's own default values of those `keys` it has one for (the first trial of a
        search starts from them); none by default. `training`: what the framework's own defaults may
        depend on (e.g. Ultralytics' 'auto' optimizer on the number of iterations)."""
        return {}

    @classmethod
    def check_model(cls, model: str, weights: str | None) -> None:
        """Check that the model and weights can be used here; nothing to check by default.

        Args:
            model: a model config, architecture or weights file as the framework names them.
            weights: weights to start from (a file or a model-zoo name), or None.

        Raises:
            ConfigError: missing, corrupt, or needs a download that cannot happen (offline).
        """

    @classmethod
    def resolve_model(cls, model: str, weights: str | None) -> tuple[str, str | None]:
        """The model and weights as every trial will see them.

        Args:
            model: as given by the user ("" for the adapter's default).
            weights: as given, or None (from scratch, or from the model file itself).

        Returns:
            (model, weights): the default model filled in, a local weights file made absolute.

        Raises:
            ConfigError: from `check_model`.
        """
        cls.check_model(model, weights)
        if weights and Path(weights).expanduser().exists():
            weights = str(Path(weights).expanduser().resolve())
        return model or cls.default_model, weights

    @classmethod
    def pretrained_weights(cls, model: str, has_gpu: bool) -> PretrainedWeights:
        """The COCO-pretrained weights the framework publishes for `model`, and whether they can be had.

        A search starts from them unless the user passes `--weights` (`none`: from scratch); the
        decision is `segtune.runners.plan.starting_point`'s. Nothing is downloaded here: the answer
        says whether the file is already where the framework looks, or else whether its download
        host answers (`segtune.trainers.pretrained.locate`: a 2-second probe at most).

        Args:
            model: as the user gave it; "" for the model a fine-tuning search trains by default
                (it may differ from `default_model`, which is the from-scratch default).
            has_gpu: whether the trials get GPUs (the default model may depend on it).

        Returns:
            A PretrainedWeights; `wanted=None` (with `why_not`) when the framework publishes no COCO
            weights for `model` (the default: this adapter knows of none).

        Raises:
            ConfigError: `model` is not a model of this framework.

        Example:
            ::

                @classmethod
                def pretrained_weights(cls, model, has_gpu):
                    model = model or "mine-small.yaml"
                    url = f"https://example.org/{Path(model).stem}-coco.pt"
                    cache = Path.home() / ".cache" / "mine" / Path(url).name
                    found, can_download, why_not = locate(cache, url)
                    return PretrainedWeights(model, Path(url).name, found, cache, url, can_download, why_not)
        """
        return PretrainedWeights(
            model or cls.default_model,
            None,
            why_not=f"segtune knows no COCO-pretrained weights of {cls.display_name()}",
        )

    @classmethod
    def fetch_pretrained(cls, weights: PretrainedWeights) -> str:
        """`weights` made ready for the trials: downloaded once, before any trial, into the framework's
        own cache when they are not there yet, and loaded once (a corrupt file fails here).

        Args:
            weights: this adapter's `pretrained_weights` answer, found or with `can_download` True.

        Returns:
            The weights as every trial gets them (`TrialContext.weights`): a local file, or a name the
            framework resolves from its cache without a download.

        Raises:
            ConfigError: the download failed (the search then trains from scratch and says why).
        """
        raise ConfigError(f"{cls.display_name()} cannot download pretrained weights")

    @classmethod
    def native_metric_names(cls) -> frozenset[str]:
        """The framework's own metrics this adapter reports; empty = any name under native_prefix."""
        return frozenset()

    @classmethod
    def data_layouts(cls) -> tuple[DataLayout, ...]:
        """Forms of the data this adapter trains on besides the COCO JSONs (e.g. its framework's own
        folder layout); the runner prepares them once, before any trial, into the dataset cache."""
        return ()

    @classmethod
    def display_name(cls) -> str:
        return f"{cls.framework} ({cls.backend})" if cls.backend else cls.framework

    # ---- one trial ---------------------------------------------------------------------------
    @abstractmethod
    def train(self, on_epoch_end: EpochEnd, resume_from: Path | None = None) -> None:
        """Train up to `context.max_epochs`, calling `on_epoch_end` after each epoch-sized unit.

        Args:
            on_epoch_end: called as `on_epoch_end(epoch, native_metrics)` after each epoch (1-based
                count of epochs completed; the framework's own losses, lr, native mAP). The model
                must be usable by `predict_val` and `save_checkpoint` during the call.
            resume_from: a directory written by `save_checkpoint`: continue after its epoch.

        Raises:
            TrainingDiverged: the loss is no longer finite (the trial ends with that reason recorded).
        """

    def record_milestone(self, name: str) -> None:
        """Note when a start-up step first finished (e.g. "framework_imported", "model_built",
        "data_ready", "first_batch"); the trial's start-up breakdown (`runners/trial/startup.py`) shows them."""
        self.milestones.setdefault(name, time.time())

    @property
    def amp_enabled(self) -> bool:
        """Whether training runs in mixed precision, as the framework finally decided (recorded per
        trial, e.g. to check that GPU trials use AMP)."""
        return False

    @functools.cached_property
    def val_images(self) -> list[ImageRecord]:
        """The val split's images, read once per trial rather than at every evaluation."""
        return list_images(self.context.dataset.val_json, self.context.dataset.val_images)

    @abstractmethod
    def predict_val(self) -> list[dict[str, Any]]:
        """The current model's predictions on the val split, for segtune's COCO evaluator.

        Returns:
            COCO results: dicts with image_id, category_id (the dataset's original ids, mapped back
            from class indices), bbox (xywh), score, segmentation (RLE at the image's full resolution);
            at most `context.max_detections` per image.
        """

    @abstractmethod
    def single_image_inference(self, image: ImageRecord) -> AbstractContextManager[TimedInference]:
        """Inside the `with`, the current model predicts `image` alone (see TimedInference); training
        can continue unchanged afterwards (modes, RNG and weights restored)."""

    @abstractmethod
    def save_checkpoint(self, directory: Path) -> None:
        """Write everything needed to resume training after the current epoch.

        Args:
            directory: an empty directory; Ray copies it into the trial's checkpoint, and a resumed
                trial gets it back as `train(resume_from=...)`.
        """

    # ---- after the search --------------------------------------------------------------------
    @classmethod
    @abstractmethod
    def weights_in_checkpoint(cls, directory: Path) -> Path:
        """The file in a checkpoint directory that holds the model weights (for export)."""

    @classmethod
    def native_config(cls, params: Mapping[str, Any], context: TrialContext) -> dict[str, Any]:
        """The configuration in the framework's own form (for export); default: the params."""
        return dict(params)

    @classmethod
    def inference_files(cls, weights: Path, out: Path, params: Mapping[str, Any], onnx: bool) -> list[Path]:
        """Deployable files made from exported weights into `out` (e.g. stripped weights, ONNX);
        none by default. Raise ExportFailed for an optional file that could not be made."""
        return []
