"""The sections of the experiment record (`core/record.py: RunSettings`), one per concern.

Like Ray Tune's TuneConfig/RunConfig/CheckpointConfig: what the search trains (`FrameworkEntry`),
what it optimises (`Objective`), how much it may spend (`Budget`), how it proposes and stops trials
(`Schedule`), what each trial holds (`Resources`), where its Optuna study lives (`Study`) and how
its best configurations are confirmed (`Confirmation`). Each is frozen and checks its own values
when it is made, so that a record that loads is one segtune can run or read; a bad value is a
`ConfigError` naming the field and what it may be. Lists given to a section (as JSON has them)
become tuples: a section built in code and the same section read back compare equal.

Example:
    >>> Budget(max_epochs=30, num_samples=16).max_epochs
    30
    >>> Schedule(sampler="grid")
    Traceback (most recent call last):
    ...
    segtune.core.errors.ConfigError: schedule.sampler must be tpe or random, got 'grid'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from segtune.core.errors import ConfigError

MODES = ("max", "min")
SAMPLERS = ("tpe", "random")
SCHEDULERS = ("asha", "none")


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _freeze(instance: object, name: str, value: Any) -> None:
    """Set a field of a frozen dataclass in its __post_init__ (normalising what JSON gave)."""
    object.__setattr__(instance, name, value)


@dataclass(frozen=True)
class FrameworkEntry:
    """One framework a search trains: a single-framework search has one entry, a search over
    several (core/choice.py) one per framework.

    `models`: the model choices (a single-framework search's one model; none in a record that
    named no model). `weights`: the file or model-zoo name trials start from (None: from scratch).
    `space`: the framework's own search space as `SearchSpace.to_dict` writes it.
    """

    name: str
    backend: str = ""
    models: tuple[str, ...] = ()
    weights: str | None = None
    space: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _freeze(self, "models", tuple(self.models))
        _check(
            bool(self.name) and "," not in self.name,
            f"frameworks: a framework's name must be one name, got {self.name!r}",
        )

    @property
    def model(self) -> str:
        """The model a trial of this framework trains when its config chose none ("" when none is named)."""
        return self.models[0] if self.models else ""


@dataclass(frozen=True)
class Objective:
    """What the search optimises: `metric` in direction `mode`; `objectives` ((metric, mode), ...)
    for a search over several at once (Optuna's multi-objective TPE, no ASHA), the first being
    (metric, mode); () for one."""

    metric: str
    mode: str
    objectives: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        _freeze(self, "objectives", tuple((str(m), str(d)) for m, d in self.objectives))
        _check(bool(self.metric), "objective.metric must name a metric, got ''")
        _check(self.mode in MODES, f"objective.mode must be max or min, got {self.mode!r}")
        for metric, mode in self.objectives:
            _check(mode in MODES, f"objective.objectives: the mode of {metric} must be max or min, got {mode!r}")
        _check(
            not self.objectives or self.objectives[0] == (self.metric, self.mode),
            f"objective.objectives must start with the metric ({self.metric}, {self.mode}), got {self.objectives[:1]}",
        )


@dataclass(frozen=True)
class Budget:
    """How much the search may spend, as its last run used it (`--resume` may grow `num_samples`
    and give a new `time_budget`).

    `num_samples` None: the record was made before segtune kept the budget (see core/migrate.py);
    such a search resumes with Ray's own restore, unchanged. `budget_epochs`: the epochs of all
    trials together after which the search ends (None: no such budget). `time_budget`: seconds
    for one run (None: none).
    """

    max_epochs: int
    num_samples: int | None
    budget_epochs: int | None = None
    time_budget: float | None = None

    def __post_init__(self) -> None:
        _check(self.max_epochs >= 1, f"budget.max_epochs must be >= 1, got {self.max_epochs}")
        _check(
            self.num_samples is None or self.num_samples >= 1,
            f"budget.num_samples must be >= 1, got {self.num_samples}",
        )
        _check(
            self.budget_epochs is None or self.budget_epochs >= 1,
            f"budget.budget_epochs must be >= 1 or null, got {self.budget_epochs}",
        )
        _check(
            self.time_budget is None or self.time_budget > 0,
            f"budget.time_budget must be > 0 seconds or null, got {self.time_budget}",
        )

    @property
    def recorded(self) -> bool:
        """False for a record made before segtune kept the budget."""
        return self.num_samples is not None


@dataclass(frozen=True)
class Schedule:
    """How configurations are proposed (`sampler`: tpe or random) and whether ASHA stops trials
    (`scheduler`: asha or none), with ASHA's first rung and reduction factor. `grace_period` None:
    a record made before the schedule was kept."""

    sampler: str = "tpe"
    scheduler: str = "asha"
    grace_period: int | None = 1
    reduction_factor: float = 3.0

    def __post_init__(self) -> None:
        _check(self.sampler in SAMPLERS, f"schedule.sampler must be tpe or random, got {self.sampler!r}")
        _check(self.scheduler in SCHEDULERS, f"schedule.scheduler must be asha or none, got {self.scheduler!r}")
        _check(
            self.grace_period is None or self.grace_period >= 1,
            f"schedule.grace_period must be >= 1, got {self.grace_period}",
        )
        _check(self.reduction_factor > 1, f"schedule.reduction_factor must be > 1, got {self.reduction_factor}")


@dataclass(frozen=True)
class Resources:
    """What each trial holds (GPUs, CPUs, data-loader workers), how many run at once, how often a
    failed trial is retried, and the detections per image a model keeps (at least the evaluator's
    maxDets)."""

    gpus_per_trial: float = 0.0
    cpus_per_trial: float = 1.0
    workers: int = 0
    max_concurrent: int = 1
    max_failures: int = 0
    max_detections: int = 100

    def __post_init__(self) -> None:
        _check(self.gpus_per_trial >= 0, f"resources.gpus_per_trial must be >= 0, got {self.gpus_per_trial}")
        _check(self.cpus_per_trial > 0, f"resources.cpus_per_trial must be > 0, got {self.cpus_per_trial}")
        _check(self.workers >= 0, f"resources.workers must be >= 0, got {self.workers}")
        _check(self.max_concurrent >= 1, f"resources.max_concurrent must be >= 1, got {self.max_concurrent}")
        _check(self.max_failures >= 0, f"resources.max_failures must be >= 0, got {self.max_failures}")
        _check(self.max_detections >= 1, f"resources.max_detections must be >= 1, got {self.max_detections}")


@dataclass(frozen=True)
class Study:
    """The Optuna study: an RDB URL ("": SQLite `<experiment>/optuna.db`, which follows the
    directory when it moves), its name ("": the experiment's), and the experiments whose trials
    seeded it (`--warm-start`)."""

    storage: str = ""
    name: str = ""
    warm_start: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _freeze(self, "warm_start", tuple(str(path) for path in self.warm_start))


@dataclass(frozen=True)
class Confirmation:
    """The top `top` configurations of the search trained again with `seeds` new seeds each
    (runners/plan/confirm.py); 0: none."""

    top: int = 0
    seeds: int = 0

    def __post_init__(self) -> None:
        _check(self.top >= 0, f"confirmation.top must be >= 0, got {self.top}")
        _check(self.seeds >= 0, f"confirmation.seeds must be >= 0, got {self.seeds}")
        _check(self.seeds >= 1 or not self.top, f"confirmation.seeds must be >= 1 when top is {self.top}, got 0")
