"""What `--resume` may change: the options given with it, checked against the experiment's record.

A resumed search is the same search: its data, space, model, metric and schedule stay as recorded,
and an option that would change them is refused in one line naming it (before Ray starts). Two
options are honoured: a larger `--num-samples` grows the search, and `--time-budget` is the budget
of the resumed run (without it, the recorded budget applies again to this run).
"""
from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from typing import Any

from segtune.core.errors import ConfigError
from segtune.core.record import RunSettings

_START_NEW = "or start a new experiment (--warm-start NAME reuses what this one learned)"

# Options whose recorded value a resumed search keeps: given with the same value, fine; with
# another, refused. Each with why it cannot change.
_KEPT: dict[str, tuple[Callable[[RunSettings], Any], str]] = {
    "max_epochs": (lambda s: s.budget.max_epochs,
                   "trials of one search must stay comparable, and ASHA's rungs are fixed"),
    "grace_period": (lambda s: s.schedule.grace_period, "ASHA's rungs are fixed when the search starts"),
    "reduction_factor": (lambda s: s.schedule.reduction_factor, "ASHA's rungs are fixed when the search starts"),
    "max_failures": (lambda s: s.resources.max_failures, "Ray keeps each trial's retry limit from the first run"),
    "metric": (lambda s: s.objective.metric, "the study optimises the recorded metric"),
    "mode": (lambda s: s.objective.mode, "the study optimises in the recorded direction"),
    "seed": (lambda s: s.seed, "the sampler and the data split were seeded with it"),
    "gpus_per_trial": (lambda s: s.resources.gpus_per_trial, "running trials hold the recorded resources"),
    "cpus_per_trial": (lambda s: s.resources.cpus_per_trial, "running trials hold the recorded resources"),
    "workers": (lambda s: s.resources.workers, "running trials use the recorded data loaders"),
    "iters_per_epoch": (lambda s: s.options.get("iters_per_epoch"), "an epoch must mean the same in every trial"),
    "study_storage": (lambda s: s.study.storage or None, "the study lives in the recorded storage"),
    "confirm_top": (lambda s: s.confirmation.top, "the confirmation trials are planned when the search starts"),
    "confirm_seeds": (lambda s: s.confirmation.seeds, "the confirmation trials are planned when the search starts"),
    "sampler": (lambda s: s.schedule.sampler, "the study's proposals come from the recorded sampler"),
    "scheduler": (lambda s: s.schedule.scheduler, "trials of one search must be stopped by the same rules"),
    "budget_epochs": (lambda s: s.budget.budget_epochs, "the search's trials were planned from the recorded budget"),
}
# Options that name what the search is made of: a resumed search keeps what it recorded.
_FIXED = ("data", "train_json", "train_images", "val_json", "val_images", "val_fraction", "space", "config",
          "model", "weights", "backend", "warm_start", "start_from", "objective")


def check_resume_options(args: argparse.Namespace, settings: RunSettings, legacy: bool = False) -> RunSettings:
    """`settings` as the resumed run uses them (grown num_samples, new time budget); a ConfigError
    names the first option that cannot be honoured. `legacy`: a record without the budget, which
    Ray's own restore resumes unchanged."""
    given: set[str] = getattr(args, "given", set())
    for name in _FIXED:
        if name in given:
            raise ConfigError(f"{_flag(name)} cannot be given with --resume: a resumed search keeps the data, search "
                              f"space and model it started with; leave it out, {_START_NEW}")
    for name, (recorded_of, why) in _KEPT.items():
        if name in given and getattr(args, name) != recorded_of(settings):
            raise ConfigError(f"{_flag(name)} {getattr(args, name)} differs from this experiment's "
                              f"{recorded_of(settings)} and cannot change on --resume ({why}); leave it out, "
                              f"{_START_NEW}")
    if legacy:
        for name in ("num_samples", "time_budget"):
            if name in given:
                raise ConfigError(f"{_flag(name)} cannot change on --resume of an experiment made by an earlier "
                                  f"segtune (its budget was not recorded); leave it out")
        return settings
    changes: dict[str, Any] = {}
    recorded = settings.budget.num_samples
    if "num_samples" in given and args.num_samples != recorded:
        if not settings.space.get("searched"):
            raise ConfigError("--num-samples: this experiment trains one fixed configuration (--config); leave it out")
        if args.num_samples < recorded:
            raise ConfigError(f"--num-samples {args.num_samples} is fewer than this experiment's "
                              f"{recorded}; a search can grow, not shrink: leave it out or give more")
        changes["num_samples"] = args.num_samples
    if "time_budget" in given:
        changes["time_budget"] = args.time_budget
    return dataclasses.replace(settings, budget=dataclasses.replace(settings.budget, **changes))


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")
