"""The experiment record: what the runner writes and the analysis scripts read.

`<experiment>/segtune.json` holds one `RunSettings`: the framework, the prepared dataset, the
search space itself (not a path to a file that may change or move), the budget and the resources.
Result rows use the keys below besides the metrics. Written by `runners/`, read by `runners/`
(resume) and `analysis/`; this module imports nothing else of segtune.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SETTINGS_FILE = "segtune.json"
DIVERGED_KEY = "segtune/diverged"  # 1 in the placeholder row of a trial whose loss became NaN/Inf
FAILURE_KEY = "segtune/failure"  # why that trial ended ("diverged: ...")
STUDY_FILE = "optuna.db"  # the experiment's Optuna study (SQLite) unless --study-storage names another
# Written into each trial's directory by the driver: why the trial ended, and its Optuna trial number.
END_REASON_FILE = "end_reason.json"
OPTUNA_TRIAL_FILE = "optuna_trial.json"
# Why a trial ended (`END_REASON_FILE`'s "reason").
END_FINISHED = "finished"  # trained every epoch
END_ASHA = "asha"  # stopped by ASHA at a rung
END_TIME_BUDGET = "time_budget"  # stopped when --time-budget ran out (truncated, not judged)
END_EPOCH_BUDGET = "epoch_budget"  # stopped when --budget-epochs ran out (truncated, not judged)
END_FRAMEWORK = "framework"  # the framework's own early stop (e.g. Ultralytics' patience) ended training
END_DIVERGED = "diverged"  # the loss became NaN/Inf
END_FAILED = "failed"  # an exception or a dead process (after any retries)


def trial_dir_name(trial_id: str) -> str:
    """The directory of a trial inside its experiment."""
    return f"trial_{trial_id}"


def absolute_study_url(url: str) -> str:
    """A relative SQLite path made absolute: the URL is recorded, and a resume may run elsewhere."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and url != prefix:
        return prefix + str(Path(url[len(prefix):]).resolve())
    return url


def write_json_atomic(path: Path, data: Any) -> None:
    """A reader (a running analysis, a killed driver's successor) never sees half a file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


# Config keys of a confirmation trial (runners/confirm.py): the search trial whose configuration it
# trains again, and which of its new seeds it is (1..S). Never handed to an adapter.
CONFIRM_OF_KEY = "segtune_confirm_of"
CONFIRM_SEED_KEY = "segtune_confirm_seed"
MARK_KEYS = (CONFIRM_OF_KEY, CONFIRM_SEED_KEY)


def split_marks(config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A trial's config as (hyperparameters, segtune's marks)."""
    return ({k: v for k, v in config.items() if k not in MARK_KEYS},
            {k: v for k, v in config.items() if k in MARK_KEYS})


def default_mode(metric: str) -> str:
    """min for losses, times and costs (cost/*, but FPS), max for everything else (AP)."""
    if metric.startswith("cost/"):
        return "max" if metric == "cost/fps" else "min"
    return "min" if "loss" in metric.lower() or metric.lower().endswith("time") else "max"


@dataclass(frozen=True)
class PreparedDataset:
    """Absolute paths of a validated dataset in COCO form, plus the layouts adapters asked for.

    `category_ids[i]` is the original COCO category id of class index i: frameworks train on
    contiguous class indices, predictions are mapped back before evaluation. `layouts` maps a
    layout name (declared by an adapter, e.g. its framework's own folder layout) to its entry file.
    """

    name: str
    content_hash: str
    train_json: Path
    train_images: Path
    val_json: Path
    val_images: Path
    category_ids: tuple[int, ...]
    category_names: tuple[str, ...]
    layouts: dict[str, Path] = field(default_factory=dict)
    num_train_images: int = 0
    num_val_images: int = 0
    warnings: tuple[str, ...] = field(default_factory=tuple)
    # Most annotated objects in one image (train or val): the evaluator's maxDets and the model's
    # detection limit must be at least this, or dense images are scored against truncated output.
    max_objects_per_image: int = 0
    # Where the images were read from, when train_images/val_images are the entry's own folder of
    # links (images with an EXIF orientation, written as annotated: cocodata/orientation.py).
    train_images_source: Path | None = None
    val_images_source: Path | None = None

    @property
    def num_classes(self) -> int:
        return len(self.category_ids)

    def layout(self, name: str) -> Path:
        """The entry file of layout `name`; the runner prepared every layout its adapter declared."""
        try:
            return self.layouts[name]
        except KeyError:
            raise KeyError(f"the prepared dataset {self.name} has no {name!r} layout "
                           f"(it has {sorted(self.layouts) or 'none'})") from None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key, value in data.items():
            if isinstance(value, Path):
                data[key] = str(value)
            elif isinstance(value, tuple):
                data[key] = list(value)
        data["layouts"] = {k: str(v) for k, v in self.layouts.items()}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PreparedDataset:
        values = dict(data)
        legacy_yaml = values.pop("yolo_yaml", None)  # records written before layouts existed
        layouts = dict(values.get("layouts") or {})
        if legacy_yaml and "ultralytics" not in layouts:
            layouts["ultralytics"] = legacy_yaml
        values["layouts"] = {k: Path(v) for k, v in layouts.items()}
        for key in ("train_json", "train_images", "val_json", "val_images"):
            values[key] = Path(values[key])
        for key in ("train_images_source", "val_images_source"):
            values[key] = Path(values[key]) if values.get(key) else None
        for key in ("category_ids", "category_names", "warnings"):
            values[key] = tuple(values.get(key) or ())
        return cls(**values)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, path: Path) -> PreparedDataset:
        return cls.from_dict(json.loads(Path(path).read_text()))


@dataclass(frozen=True)
class RunSettings:
    """What every trial of an experiment shares; saved as `<experiment>/segtune.json`."""

    framework: str
    backend: str
    dataset: PreparedDataset
    metric: str
    mode: str
    max_epochs: int
    model: str
    weights: str | None
    gpus_per_trial: float
    cpus_per_trial: float
    workers: int
    max_detections: int
    seed: int = 0
    # The search space as written by `search_spaces.space.SearchSpace.to_dict` (its source file,
    # the searched keys' Optuna distributions as JSON, the fixed values).
    space: dict[str, Any] = field(default_factory=dict)
    experiment_dir: str = ""  # where trials write their framework output (shared storage on a cluster)
    # Adapter-specific command-line options the adapter declared (e.g. iterations per epoch).
    options: dict[str, Any] = field(default_factory=dict)
    # The search's budget and schedule, as the last run of the experiment used them (`--resume`
    # may grow num_samples and give a new time_budget). num_samples 0: a record made before these
    # were kept.
    num_samples: int = 0
    grace_period: int = 0
    reduction_factor: float = 3.0
    max_concurrent: int = 1
    max_failures: int = 0
    time_budget: float | None = None
    # How configurations are proposed ("tpe" or "random"), whether ASHA stops trials ("asha" or
    # "none"), and the search's epoch budget (None: none; runners/budget.py).
    sampler: str = "tpe"
    scheduler: str = "asha"
    budget_epochs: int | None = None
    # Confirmation (runners/confirm.py): the top `confirm_top` configurations of the search are
    # trained again with `confirm_seeds` new seeds each; 0: none.
    confirm_top: int = 0
    confirm_seeds: int = 0
    # The Optuna study: an RDB URL ("" = SQLite `<experiment>/optuna.db`) and its name.
    study_storage: str = ""
    study_name: str = ""
    warm_start: list[str] = field(default_factory=list)  # experiments whose trials seeded the study
    # A search over several frameworks (core/choice.py): framework -> {"backend", "models" (the model
    # choices), "weights", "space" (its own SearchSpace.to_dict)}; then `framework` names them all
    # ("yolo,maskrcnn"), `space` is their union as the searcher sees it, and `model`/`weights` are
    # empty. {} for a single-framework search, whose record is as it always was.
    frameworks: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Several objectives ([[metric, mode], ...], the first = `metric`/`mode`): Optuna's
    # multi-objective TPE, no ASHA, trials ranked by Pareto rank. [] for one objective.
    objectives: list[list[str]] = field(default_factory=list)

    def study_url(self, experiment_dir: Path) -> str:
        """The study's storage URL; the default one follows the experiment directory when it moves."""
        return self.study_storage or f"sqlite:///{Path(experiment_dir).resolve() / STUDY_FILE}"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["dataset"] = self.dataset.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunSettings:
        values = dict(data)
        # Records written before the space was stored inline, or before adapter options existed.
        if isinstance(values.get("space"), str):
            values["space"] = {"source": values["space"]} if values["space"] else {}
        legacy_iters = values.pop("iters_per_epoch", None)
        if legacy_iters:
            values["options"] = {**(values.get("options") or {}), "iters_per_epoch": legacy_iters}
        return cls(**{**values, "dataset": PreparedDataset.from_dict(values["dataset"])})

    def save(self, experiment_dir: Path) -> None:
        # Written atomically: a killed driver never leaves a half-written settings file.
        write_json_atomic(Path(experiment_dir) / SETTINGS_FILE, self.to_dict())

    @classmethod
    def load(cls, experiment_dir: Path) -> RunSettings:
        return cls.from_dict(json.loads((Path(experiment_dir) / SETTINGS_FILE).read_text()))
