"""The experiment record: what the runner writes and the analysis scripts read.

`<experiment>/segtune.json` holds one `RunSettings`, in sections by concern (core/sections.py):
the prepared dataset, the frameworks, the search space itself (not a path to a file that may change
or move), the objective, the budget, the schedule, the resources, the study and the confirmation.
It carries a `schema_version`; older records are brought up to date by core/migrate.py when read.
Result rows use the keys below besides the metrics. Written by `runners/`, read by `runners/`
(resume) and `analysis/`; this module imports nothing of segtune but core/errors, core/sections
and core/migrate.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from segtune.core.errors import ConfigError, ExperimentError
from segtune.core.migrate import SCHEMA_KEY, SCHEMA_VERSION, migrate
from segtune.core.sections import Budget, Confirmation, FrameworkEntry, Objective, Resources, Schedule, Study

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
        return prefix + str(Path(url[len(prefix) :]).resolve())
    return url


def write_json_atomic(path: Path, data: Any) -> None:
    """A reader (a running analysis, a killed driver's successor) never sees half a file."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


# Config keys of a confirmation trial (runners/search/confirming.py): the search trial whose
# configuration it trains again, and which of its new seeds it is (1..S). Never handed to an adapter.
CONFIRM_OF_KEY = "segtune_confirm_of"
CONFIRM_SEED_KEY = "segtune_confirm_seed"
MARK_KEYS = (CONFIRM_OF_KEY, CONFIRM_SEED_KEY)


def split_marks(config: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A trial's config as (hyperparameters, segtune's marks)."""
    return (
        {k: v for k, v in config.items() if k not in MARK_KEYS},
        {k: v for k, v in config.items() if k in MARK_KEYS},
    )


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
            raise KeyError(
                f"the prepared dataset {self.name} has no {name!r} layout (it has {sorted(self.layouts) or 'none'})"
            ) from None

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
        """The dataset as `to_dict` wrote it (an experiment record's older forms: core/migrate.py)."""
        values = dict(data)
        values["layouts"] = {k: Path(v) for k, v in (values.get("layouts") or {}).items()}
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
    """What every trial of an experiment shares, by concern; saved as `<experiment>/segtune.json`.

    `frameworks`: what the search trains, one entry per framework (a single-framework search is
    the one-entry case; core/choice.py reads a trial's choice among several). `space`: the space
    as the searcher sees it (`SearchSpace.to_dict`): the one framework's own, or the union of
    several. `options`: the adapter-specific command-line options the adapters declared (e.g.
    iterations per epoch). `experiment_dir`: where trials write their framework output (shared
    storage on a cluster). The sections check their own values; the record checks what spans
    them. Saved with `schema_version`; `load` brings older records up to date (core/migrate.py).

    Example:
        >>> record = RunSettings.load(Path("runs/yolo-demo"))  # doctest: +SKIP
        >>> record.framework_names, record.objective.metric, record.budget.num_samples  # doctest: +SKIP
        (('yolo',), 'segm/AP', 16)
    """

    data: PreparedDataset
    frameworks: tuple[FrameworkEntry, ...]
    space: dict[str, Any]
    objective: Objective
    budget: Budget
    schedule: Schedule = field(default_factory=Schedule)
    resources: Resources = field(default_factory=Resources)
    study: Study = field(default_factory=Study)
    confirmation: Confirmation = field(default_factory=Confirmation)
    seed: int = 0
    options: dict[str, Any] = field(default_factory=dict)
    experiment_dir: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "frameworks", tuple(self.frameworks))
        names = self.framework_names
        if not names or len(set(names)) != len(names):
            raise ConfigError(f"frameworks must name each framework of the search once, got {list(names)}")
        if not self.is_multi and self.frameworks[0].space != self.space:
            raise ConfigError("space must be the framework's own space in a single-framework record")
        grace = self.schedule.grace_period
        if grace is not None and grace > self.budget.max_epochs:
            raise ConfigError(
                f"schedule.grace_period ({grace}) is longer than budget.max_epochs ({self.budget.max_epochs})"
            )

    @property
    def framework_names(self) -> tuple[str, ...]:
        return tuple(entry.name for entry in self.frameworks)

    @property
    def is_multi(self) -> bool:
        """A search over several frameworks: each trial's config says which it trained (core/choice.py)."""
        return len(self.frameworks) > 1

    @property
    def sole_framework(self) -> FrameworkEntry:
        """The framework of a single-framework record (of a multi-framework one: `core.choice.for_trial`)."""
        if self.is_multi:
            raise ValueError(
                f"a search over {', '.join(self.framework_names)} has no one framework; "
                f"core.choice.for_trial gives a trial's"
            )
        return self.frameworks[0]

    def framework_entry(self, name: str) -> FrameworkEntry:
        """The entry of framework `name`; KeyError naming the search's frameworks when it has none."""
        for entry in self.frameworks:
            if entry.name == name:
                return entry
        raise KeyError(f"the search has no framework {name!r} (it has {', '.join(self.framework_names)})")

    def study_url(self, experiment_dir: Path) -> str:
        """The study's storage URL; the default one follows the experiment directory when it moves."""
        return self.study.storage or f"sqlite:///{Path(experiment_dir).resolve() / STUDY_FILE}"

    def study_name_at(self, experiment_dir: Path) -> str:
        """The study's name: the recorded one, else the experiment directory's."""
        return self.study.name or Path(experiment_dir).name

    def to_dict(self) -> dict[str, Any]:
        data = {SCHEMA_KEY: SCHEMA_VERSION, **{f.name: getattr(self, f.name) for f in fields(self)}}
        for key, value in data.items():
            if key == "data":
                data[key] = value.to_dict()
            elif key == "frameworks":
                data[key] = [_json_ready(asdict(entry)) for entry in value]
            elif is_dataclass(value):
                data[key] = _json_ready(asdict(value))
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunSettings:
        """A record of the current schema (`migrate` brings an older one to it)."""
        values = {key: value for key, value in data.items() if key != SCHEMA_KEY}
        sections = {
            "objective": Objective,
            "budget": Budget,
            "schedule": Schedule,
            "resources": Resources,
            "study": Study,
            "confirmation": Confirmation,
        }
        for key, section in sections.items():
            if key in values:
                values[key] = section(**values[key])
        return cls(
            **{
                **values,
                "data": PreparedDataset.from_dict(values["data"]),
                "frameworks": tuple(FrameworkEntry(**entry) for entry in values["frameworks"]),
            }
        )

    def save(self, experiment_dir: Path) -> None:
        # Written atomically: a killed driver never leaves a half-written settings file.
        write_json_atomic(Path(experiment_dir) / SETTINGS_FILE, self.to_dict())

    @classmethod
    def load(cls, experiment_dir: Path) -> RunSettings:
        """Read, migrate, build: a record of any schema version up to this code's.

        Raises:
            OSError: the file cannot be read. ExperimentError: the record is newer than this code (its one
            line, naming the file, says to upgrade segtune). ValueError (`ConfigError` for a bad value),
            TypeError or KeyError: it is not a record segtune can use.
        """
        path = Path(experiment_dir) / SETTINGS_FILE
        data = json.loads(path.read_text())
        try:
            data = migrate(data)
        except ExperimentError as exc:
            raise ExperimentError(f"{path}: {exc}") from None
        return cls.from_dict(data)


def _json_ready(data: dict[str, Any]) -> dict[str, Any]:
    """Tuples as lists, as JSON writes them (and as `json.loads` gives them back)."""
    return {
        key: [list(v) if isinstance(v, tuple) else v for v in value] if isinstance(value, tuple) else value
        for key, value in data.items()
    }
