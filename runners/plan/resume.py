"""What `--resume` may change: the options given with it, checked against the experiment's record.

A resumed search is the same search: its data, space, model, metric and schedule stay as recorded,
and an option that would change them is refused in one line naming it (before Ray starts). Two
options are honoured: a larger `--num-samples` grows the search, and `--time-budget` is the budget
of the resumed run (without it, the recorded budget applies again to this run).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from segtune.core.errors import ConfigError
from segtune.core.record import RunSettings

if TYPE_CHECKING:
    from segtune.runners.request import TuneRequest

_START_NEW = "or start a new experiment (--warm-start NAME reuses what this one learned)"

# Options whose recorded value a resumed search keeps: given with the same value, fine; with
# another, refused. Each with its value in the record, its value in the request, and why it cannot change.
_KEPT: dict[str, tuple[Callable[[RunSettings], Any], Callable[[TuneRequest], Any], str]] = {
    "max_epochs": (
        lambda s: s.budget.max_epochs,
        lambda r: r.budget.max_epochs,
        "trials of one search must stay comparable, and ASHA's rungs are fixed",
    ),
    "grace_period": (
        lambda s: s.schedule.grace_period,
        lambda r: r.budget.grace_period,
        "ASHA's rungs are fixed when the search starts",
    ),
    "reduction_factor": (
        lambda s: s.schedule.reduction_factor,
        lambda r: r.budget.reduction_factor,
        "ASHA's rungs are fixed when the search starts",
    ),
    "max_failures": (
        lambda s: s.resources.max_failures,
        lambda r: r.budget.max_failures,
        "Ray keeps each trial's retry limit from the first run",
    ),
    "metric": (lambda s: s.objective.metric, lambda r: r.objective.metric, "the study optimises the recorded metric"),
    "mode": (lambda s: s.objective.mode, lambda r: r.objective.mode, "the study optimises in the recorded direction"),
    "seed": (lambda s: s.seed, lambda r: r.seed, "the sampler and the data split were seeded with it"),
    "gpus_per_trial": (
        lambda s: s.resources.gpus_per_trial,
        lambda r: r.resources.gpus_per_trial,
        "running trials hold the recorded resources",
    ),
    "cpus_per_trial": (
        lambda s: s.resources.cpus_per_trial,
        lambda r: r.resources.cpus_per_trial,
        "running trials hold the recorded resources",
    ),
    "workers": (
        lambda s: s.resources.workers,
        lambda r: r.resources.workers,
        "running trials use the recorded data loaders",
    ),
    "iters_per_epoch": (
        lambda s: s.options.get("iters_per_epoch"),
        lambda r: dict(r.adapter_options).get("iters_per_epoch"),
        "an epoch must mean the same in every trial",
    ),
    "study_storage": (
        lambda s: s.study.storage or None,
        lambda r: r.study.storage,
        "the study lives in the recorded storage",
    ),
    "confirm_top": (
        lambda s: s.confirmation.top,
        lambda r: r.confirm.top,
        "the confirmation trials are planned when the search starts",
    ),
    "confirm_seeds": (
        lambda s: s.confirmation.seeds,
        lambda r: r.confirm.seeds,
        "the confirmation trials are planned when the search starts",
    ),
    "sampler": (
        lambda s: s.schedule.sampler,
        lambda r: r.budget.sampler,
        "the study's proposals come from the recorded sampler",
    ),
    "scheduler": (
        lambda s: s.schedule.scheduler,
        lambda r: r.budget.scheduler,
        "trials of one search must be stopped by the same rules",
    ),
    "budget_epochs": (
        lambda s: s.budget.budget_epochs,
        lambda r: r.budget.budget_epochs,
        "the search's trials were planned from the recorded budget",
    ),
}
# Options that name what the search is made of: a resumed search keeps what it recorded.
_FIXED = (
    "data",
    "train_json",
    "train_images",
    "val_json",
    "val_images",
    "val_fraction",
    "space",
    "config",
    "model",
    "weights",
    "backend",
    "warm_start",
    "start_from",
    "objective",
)


def check_resume_options(request: TuneRequest, settings: RunSettings, legacy: bool = False) -> RunSettings:
    """`settings` as the resumed run uses them (grown num_samples, new time budget); a ConfigError
    names the first option given in `request` that cannot be honoured. `legacy`: a record without
    the budget, which Ray's own restore resumes unchanged."""
    given = request.given
    for name in _FIXED:
        if name in given:
            raise ConfigError(
                f"{_flag(name)} cannot be given with --resume: a resumed search keeps the data, search "
                f"space and model it started with; leave it out, {_START_NEW}"
            )
    for name, (recorded_of, given_of, why) in _KEPT.items():
        if name in given and given_of(request) != recorded_of(settings):
            raise ConfigError(
                f"{_flag(name)} {given_of(request)} differs from this experiment's "
                f"{recorded_of(settings)} and cannot change on --resume ({why}); leave it out, "
                f"{_START_NEW}"
            )
    if legacy:
        for name in ("num_samples", "time_budget"):
            if name in given:
                raise ConfigError(
                    f"{_flag(name)} cannot change on --resume of an experiment made by an earlier "
                    f"segtune (its budget was not recorded); leave it out"
                )
        return settings
    changes: dict[str, Any] = {}
    num_samples, recorded = request.budget.num_samples, settings.budget.num_samples
    if "num_samples" in given and num_samples != recorded:
        if not settings.space.get("searched"):
            raise ConfigError("--num-samples: this experiment trains one fixed configuration (--config); leave it out")
        if num_samples < recorded:
            raise ConfigError(
                f"--num-samples {num_samples} is fewer than this experiment's "
                f"{recorded}; a search can grow, not shrink: leave it out or give more"
            )
        changes["num_samples"] = num_samples
    if "time_budget" in given:
        changes["time_budget"] = request.budget.time_budget
    return dataclasses.replace(settings, budget=dataclasses.replace(settings.budget, **changes))


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")
