"""What `segtune tune` is asked to do: a frozen, typed request, split by concern like Ray's TuneConfig/RunConfig.

The command line (runners/command/) parses and checks it ONCE (`parse_request`); everything below it
(runners/launch.py, runners/plan/) reads it and never changes it (a `dataclasses.replace` makes a new
one). A search over one framework is the one-entry case of several: `TuneRequest.frameworks` holds
one `FrameworkRequest` per framework, each with the model choices, weights and space file given for
it (`--model FRAMEWORK=MODEL,...` with several; a plain value with one).

Example:
    >>> from segtune.runners.command.request import parse_request
    >>> request = parse_request(["--framework", "yolo", "--num-samples", "4"])
    >>> request.names, request.budget.num_samples, request.output.verbosity
    (('yolo',), 4, 'default')
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "FrameworkRequest",
    "DataRequest",
    "ObjectiveRequest",
    "BudgetRequest",
    "ConfirmRequest",
    "StudyRequest",
    "ResourceRequest",
    "OutputRequest",
    "TuneRequest",
]


@dataclass(frozen=True)
class FrameworkRequest:
    """One framework of the search, as the command line (or a --config file) names it."""

    name: str
    backend: str = "auto"  # "auto", or one of the framework's backends (resolved when the search starts)
    models: tuple[str, ...] = ()  # the model choices given; (): the adapter's default(s)
    weights: str | None = None  # weights to start from; None: from scratch (or the model's own file)
    space: Path | None = None  # its --space file; None: search_spaces/<framework>(_cpu).yaml


@dataclass(frozen=True)
class DataRequest:
    """Where the data is (COCO dir, a framework's dataset file, or separate JSONs and image dirs)."""

    data: Path | None = None
    train_json: Path | None = None
    train_images: Path | None = None
    val_json: Path | None = None
    val_images: Path | None = None
    val_fraction: float = 0.1


@dataclass(frozen=True)
class ObjectiveRequest:
    """What a trial is judged by: one metric (mode None: its usual direction), or several objectives."""

    metric: str = "segm/AP"
    mode: str | None = None
    objectives: tuple[tuple[str, str], ...] = ()  # () for one objective; else (metric, mode) pairs, first = metric


@dataclass(frozen=True)
class BudgetRequest:
    """The search's size and schedule; None: the default for the hardware (runners/plan/budget.py)."""

    num_samples: int | None = None
    max_epochs: int | None = None
    grace_period: int | None = None
    reduction_factor: float = 3
    sampler: str = "tpe"
    scheduler: str = "asha"
    budget_epochs: int | None = None
    time_budget: float | None = None
    max_failures: int = 0


@dataclass(frozen=True)
class ConfirmRequest:
    """The best `top` configurations trained again with `seeds` new seeds (top None: the default)."""

    top: int | None = None
    seeds: int = 2


@dataclass(frozen=True)
class StudyRequest:
    """The Optuna study and what seeds it."""

    storage: str | None = None  # an RDB URL, SQLite paths made absolute; None: <experiment>/optuna.db
    warm_start: tuple[Path, ...] = ()
    start_from: Path | None = None
    config: Path | None = None  # one fixed configuration to train instead of a search


@dataclass(frozen=True)
class ResourceRequest:
    """Per-trial resources (None: planned from the cluster) and the cluster to join."""

    gpus_per_trial: float | None = None
    cpus_per_trial: float | None = None
    workers: int | None = None
    address: str | None = None


@dataclass(frozen=True)
class OutputRequest:
    """Where the experiment goes and what the terminal shows."""

    name: str | None = None
    storage: Path = Path("runs")
    resume: bool = False
    verbosity: str = "default"  # quiet, default or verbose
    cache_dir: Path = Path("~/.cache/segtune")


@dataclass(frozen=True)
class TuneRequest:
    """`segtune tune ARGS`, parsed and checked (see the module docstring)."""

    frameworks: tuple[FrameworkRequest, ...]
    data: DataRequest = DataRequest()
    objective: ObjectiveRequest = ObjectiveRequest()
    budget: BudgetRequest = BudgetRequest()
    confirm: ConfirmRequest = ConfirmRequest()
    study: StudyRequest = StudyRequest()
    resources: ResourceRequest = ResourceRequest()
    output: OutputRequest = OutputRequest()
    seed: int = 0
    adapter_options: tuple[tuple[str, Any], ...] = ()  # (option, value) of ADAPTER_OPTIONS given
    given: frozenset[str] = frozenset()  # options typed by the user (argparse dests): --resume checks them
    all_frameworks: bool = False  # --framework all (the note when only one framework is installed)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.frameworks)

    @property
    def several(self) -> bool:
        """Trials choose the framework (a conditional space, FRAMEWORK=VALUE keys, ASHA per framework)."""
        return len(self.frameworks) > 1
