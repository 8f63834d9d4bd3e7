"""The trial's hooks: each does one of the things that happen around the epochs the framework trains.

The loop (`loop.py`) calls every hook's phases in the order of its one hook list:

    before_train(start)               once, after the checkpoint (if any) is restored: take back state
    epoch_trained(epoch)              the framework has just finished an epoch: stop clocks, nothing measured
    after_epoch(epoch, native, row)   add this hook's entries to the epoch's one result row
    save(directory)                   write this hook's state into the epoch's checkpoint
    after_report(epoch)               the row is reported: the framework trains on from here
    after_diverged(error, row)        training diverged: fill the trial's last row instead

A hook holds its own state; none calls another. What one hook needs of another's work it reads from
the row (the startup log takes the evaluation time from `EVAL_TIME_KEY`).

Tests add hooks of their own (fault injection: tests/fault_hooks.py) through `EXTRA_HOOKS_ENV`,
a testing seam read once per trial in the trial's process (see `extra_hooks`).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import math
import os
import sys
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segtune.cocodata.evaluator import METRIC_KEYS, CocoEvaluator
from segtune.core.errors import ConfigError
from segtune.core.record import DIVERGED_KEY, FAILURE_KEY
from segtune.core.score import SCORE_KEY, WINDOW_KEY, RunningScore
from segtune.runners.trial.cost import TrialCost
from segtune.runners.trial.startup import StartupLog
from segtune.trainers.base import TrainerAdapter, TrainingDiverged, TrialContext

# Extra hooks for one trial, named in the environment of the trial's process (the driver's, which Ray
# passes on): "SOURCE:NAME[=ARGUMENT]", several separated by ";". A testing seam, not an option.
EXTRA_HOOKS_ENV = "SEGTUNE_TRIAL_HOOKS"
# The metric values behind the running score, kept in every checkpoint so a resumed trial goes on scoring.
SCORE_STATE_FILE = "segtune-score.json"
EVAL_TIME_KEY = "segtune/eval_time_s"


class StopTraining(Exception):
    """Raised by a hook in `epoch_trained` to end the trial's training before this epoch is reported,
    as a framework's own early stopping ends it: the trial ends without an error."""


@dataclass(frozen=True)
class TrialStart:
    """What a hook learns when the trial starts (or starts again from its checkpoint)."""

    trial_dir: Path  # the trial's folder in the experiment directory
    experiment_dir: Path
    checkpoint: Path | None  # the restored checkpoint's files (a resumed or retried trial), else None


def worst_value(mode: str) -> float:
    """The value of a metric that every real value beats (Optuna refuses NaN)."""
    return 0.0 if mode == "max" else 1e30


class TrialHook:
    """One duty of a trial around the epochs its framework trains. Every phase does nothing here:
    a hook overrides the phases its duty needs. The loop calls them in its hook list's order.

    Example (a hook that stops training at a wall-clock deadline)::

        class Deadline(TrialHook):
            def __init__(self, seconds: str) -> None:
                self.end = time.time() + float(seconds)

            def epoch_trained(self, epoch: int) -> None:
                if time.time() > self.end:
                    raise StopTraining()
    """

    def before_train(self, start: TrialStart) -> None:
        """Once, before the framework trains.

        Args:
            start: the trial's folders and its restored checkpoint (None on a fresh start): a hook
                with state takes it back from the files its `save` wrote there.
        """

    def epoch_trained(self, epoch: int) -> None:
        """The framework has just finished an epoch; nothing of it is evaluated or measured yet.

        Args:
            epoch: epochs completed so far (1-based).

        Raises:
            StopTraining: to end training here without reporting this epoch.
        """

    def after_epoch(self, epoch: int, native: Mapping[str, float], row: dict[str, Any]) -> None:
        """Add this hook's entries to the epoch's result row (what `tune.report` gets).

        Args:
            epoch: epochs completed so far (1-based).
            native: the framework's own numbers of this epoch (losses, learning rate, its mAP).
            row: the result row so far, filled by the hooks before this one; add to it in place.
        """

    def save(self, directory: Path) -> None:
        """Write this hook's state into the epoch's checkpoint.

        Args:
            directory: the checkpoint being staged (the adapter's files go there too); `before_train`
                of a resumed trial gets these files back.
        """

    def after_report(self, epoch: int) -> None:
        """The epoch is reported; the framework trains the next one from here.

        Args:
            epoch: the epoch just reported.
        """

    def after_diverged(self, error: TrainingDiverged, row: dict[str, Any]) -> None:
        """Training diverged (NaN or Inf loss): add this hook's entries to the trial's last row.

        Args:
            error: what the adapter raised (its message is the reason recorded).
            row: the last row so far; add to it in place.
        """


class EvaluationHook(TrialHook):
    """The model's quality: segtune's COCO metrics of the val split (one evaluator for every
    framework), beside the framework's own finite numbers, and what evaluating took."""

    def __init__(self, adapter: TrainerAdapter, evaluator: CocoEvaluator) -> None:
        self.adapter = adapter
        self.evaluator = evaluator

    def after_epoch(self, epoch: int, native: Mapping[str, float], row: dict[str, Any]) -> None:
        started = time.perf_counter()
        predictions = self.adapter.predict_val()
        metrics = self.evaluator.evaluate(predictions)
        row.update(metrics)
        row.update({k: v for k, v in native.items() if isinstance(v, (int, float)) and math.isfinite(v)})
        row.update(
            {"epoch": epoch, EVAL_TIME_KEY: time.perf_counter() - started, "segtune/num_predictions": len(predictions)}
        )


class ContextHook(TrialHook):
    """Where the trial runs and for how long: its time so far, node, device, GPU and AMP."""

    def __init__(self, adapter: TrainerAdapter, context: TrialContext) -> None:
        self.adapter = adapter
        self.node_id = _node_id()
        self.placement = {"segtune/device": context.device, **_gpu_identity(context.use_cuda)}
        self.started = time.perf_counter()

    def after_epoch(self, epoch: int, native: Mapping[str, float], row: dict[str, Any]) -> None:
        row.update(
            {
                "segtune/trial_time_s": time.perf_counter() - self.started,
                "segtune/node_id": self.node_id,
                **self.placement,
                "segtune/amp": int(self.adapter.amp_enabled),
            }
        )


class DivergenceHook(TrialHook):
    """Whether training diverged: 0 in every epoch's row; when it does, the trial's last row: the
    reason, zero metrics and a worst-case score (Optuna refuses NaN, and TPE should learn that this
    region is bad)."""

    def __init__(self, metric: str, mode: str) -> None:
        self.metric = metric
        self.mode = mode
        self.last_epoch = 0  # the last epoch reported by this process

    def after_epoch(self, epoch: int, native: Mapping[str, float], row: dict[str, Any]) -> None:
        row[DIVERGED_KEY] = 0

    def after_report(self, epoch: int) -> None:
        self.last_epoch = epoch

    def after_diverged(self, error: TrainingDiverged, row: dict[str, Any]) -> None:
        row.update({key: 0.0 for key in METRIC_KEYS})
        worst = worst_value(self.mode)
        row.update(
            {
                self.metric: worst,
                SCORE_KEY: worst,
                WINDOW_KEY: worst,
                "epoch": self.last_epoch + 1,
                DIVERGED_KEY: 1,
                FAILURE_KEY: f"diverged: {error}"[:500],
            }
        )


class CostHook(TrialHook):
    """What the model costs (`cost/*`, see cost.py): the epoch's training time and memory, and now
    and then its inference latency; carried on in the checkpoint."""

    def __init__(self, cost: TrialCost) -> None:
        self.cost = cost  # its clock runs from here: the first epoch's time includes the start-up

    def before_train(self, start: TrialStart) -> None:
        self.cost.restore(start.checkpoint)

    def epoch_trained(self, epoch: int) -> None:
        self.cost.epoch_trained()

    def after_epoch(self, epoch: int, native: Mapping[str, float], row: dict[str, Any]) -> None:
        row.update(self.cost.metrics(epoch))

    def save(self, directory: Path) -> None:
        self.cost.save(directory)

    def after_report(self, epoch: int) -> None:
        self.cost.training_resumes()


class ScoreHook(TrialHook):
    """The trial's score (core/score.py) from the search metric's values so far; the metric's worst
    value where the row lacks it. The values go into every checkpoint: a resumed trial goes on scoring."""

    def __init__(self, metric: str, mode: str) -> None:
        self.metric = metric
        self.mode = mode
        self.score = RunningScore(mode)

    def before_train(self, start: TrialStart) -> None:
        if start.checkpoint is not None and (start.checkpoint / SCORE_STATE_FILE).is_file():
            self.score.values = json.loads((start.checkpoint / SCORE_STATE_FILE).read_text())

    def after_epoch(self, epoch: int, native: Mapping[str, float], row: dict[str, Any]) -> None:
        if self.metric not in row:
            row[self.metric] = worst_value(self.mode)
        row.update(self.score.add(row[self.metric]))

    def save(self, directory: Path) -> None:
        (directory / SCORE_STATE_FILE).write_text(json.dumps(self.score.values))


class StartupHook(TrialHook):
    """The trial's way to its first reported epoch (startup.json, see startup.py): the first epoch's
    end, then the file, written before that epoch's report (a trial stopped at its first rung ends
    inside the report)."""

    def __init__(self, log: StartupLog, trial_dir: Path, adapter: TrainerAdapter) -> None:
        self.log = log
        self.trial_dir = trial_dir
        self.adapter = adapter
        self.reported = False  # an epoch reported by this process

    def epoch_trained(self, epoch: int) -> None:
        if not self.reported:
            self.log.mark("first_epoch_trained")

    def after_epoch(self, epoch: int, native: Mapping[str, float], row: dict[str, Any]) -> None:
        if not self.reported:
            self.log.write(self.trial_dir, self.adapter.milestones, row[EVAL_TIME_KEY])

    def after_report(self, epoch: int) -> None:
        self.reported = True


class CheckpointHook(TrialHook):
    """The framework's own resumable state (weights, optimizer, its epoch) in every checkpoint."""

    def __init__(self, adapter: TrainerAdapter) -> None:
        self.adapter = adapter

    def save(self, directory: Path) -> None:
        self.adapter.save_checkpoint(directory)


# ---- hooks that tests add ---------------------------------------------------------------------------
def extra_hooks(spec: str | None = None) -> list[TrialHook]:
    """The hooks `EXTRA_HOOKS_ENV` names (or `spec`): how tests inject faults into real trials.

    A trial runs in a Ray worker process, so a hook cannot be handed over as an object: the
    environment names where to find it, and each trial builds its own. Each entry is
    "SOURCE:NAME[=ARGUMENT]": SOURCE an absolute path to a .py file (a trial's working directory is
    not the driver's) or an importable module; NAME a `TrialHook` subclass or a function returning
    one, called with ARGUMENT (a string) when there is one, else with nothing.

    Args:
        spec: entries separated by ";"; None: `EXTRA_HOOKS_ENV` of this process (none when unset).

    Returns:
        The hooks, in the order named.

    Raises:
        ConfigError: an entry that is malformed or does not make a `TrialHook`.

    Example::

        SEGTUNE_TRIAL_HOOKS="/repo/tests/fault_hooks.py:Fault=exit@2:first" segtune tune ...
    """
    spec = os.environ.get(EXTRA_HOOKS_ENV, "") if spec is None else spec
    return [_build_hook(entry.strip()) for entry in spec.split(";") if entry.strip()]


def _build_hook(entry: str) -> TrialHook:
    target, has_argument, argument = entry.partition("=")
    source, _, name = target.rpartition(":")
    if not source or not name:
        raise ConfigError(f"{EXTRA_HOOKS_ENV}: {entry!r} names no hook; write SOURCE:NAME[=ARGUMENT]")
    factory = getattr(_load_module(source), name, None)
    if factory is None:
        raise ConfigError(f"{EXTRA_HOOKS_ENV}: {source} has no {name!r}; name a TrialHook class in it")
    hook = factory(argument) if has_argument else factory()
    if not isinstance(hook, TrialHook):
        raise ConfigError(f"{EXTRA_HOOKS_ENV}: {entry!r} made a {type(hook).__name__}, not a TrialHook")
    return hook


def _load_module(source: str):
    if not source.endswith(".py"):
        return importlib.import_module(source)
    path = Path(source)
    if not path.is_absolute() or not path.is_file():
        raise ConfigError(f"{EXTRA_HOOKS_ENV}: {source} is not an absolute path to a file; give one")
    # Registered (dataclasses and pickle look modules up there), once per file and process.
    name = f"segtune_trial_hooks_{path.stem}_{zlib.crc32(str(path.resolve()).encode()):08x}"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


# ---- the trial's place -------------------------------------------------------------------------------
def _node_id() -> str:
    import ray

    return ray.get_runtime_context().get_node_id()


def _gpu_identity(use_cuda: bool) -> dict[str, str]:
    """Which GPU the trial trains on: Ray's ids of the node's GPUs it was given (e.g. "3"; several
    trials share one with fractional --gpus-per-trial) and the UUID of the device it uses."""
    if not use_cuda:
        return {"segtune/gpu_ids": "", "segtune/gpu_uuid": ""}
    import ray
    import torch

    ids = ray.get_runtime_context().get_accelerator_ids().get("GPU", [])
    return {
        "segtune/gpu_ids": ",".join(map(str, ids)),
        "segtune/gpu_uuid": str(torch.cuda.get_device_properties(0).uuid),
    }
