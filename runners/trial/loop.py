"""One trial: a Ray Tune function trainable — a loop that evaluates, reports and checkpoints.

The framework's adapter trains; after each epoch it calls back here, and this module turns the
model into COCO metrics (one evaluator for every framework), a checkpoint, and one `tune.report`.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from segtune.cocodata.evaluator import METRIC_KEYS
from segtune.core.choice import for_trial
from segtune.core.record import DIVERGED_KEY, FAILURE_KEY, RunSettings, split_marks
from segtune.core.score import SCORE_KEY, WINDOW_KEY, RunningScore
from segtune.runners.trial.cost import TrialCost
from segtune.runners.trial.startup import StartupLog, shared_evaluator
from segtune.search_spaces.space import thaw
from segtune.trainers.base import TrainingDiverged, TrialContext
from segtune.trainers.registry import get_adapter

# Fault injection for the failure-handling tests: "KIND@EPOCH[:SCOPE]", KIND one of raise, oom,
# exit, stop (training ends before that epoch, as a framework's own early stopping ends it);
# SCOPE every (default), once (each trial once: a retry succeeds) or first (one trial only).
FAULT_ENV = "SEGTUNE_INJECT_FAULT"
# The metric values behind the running score, kept in every checkpoint so a resumed trial goes on scoring.
SCORE_STATE_FILE = "segtune-score.json"


class _InjectedEarlyStop(Exception):
    """The `stop` fault: the framework's training loop ends early, without an error."""


def trial_device(gpus_per_trial: float) -> str:
    """Ray narrowed CUDA_VISIBLE_DEVICES to this trial's GPUs; a CPU trial must say 'cpu' explicitly
    (recent Ray lets a 0-GPU trial see every GPU)."""
    import torch

    return "cuda:0" if gpus_per_trial > 0 and torch.cuda.is_available() else "cpu"


def worst_value(mode: str) -> float:
    return 0.0 if mode == "max" else 1e30


def run_trial(config: dict[str, Any], settings: RunSettings) -> None:
    """The Ray Tune trainable. `config` holds the hyperparameters (sampled and fixed); for a
    confirmation trial also segtune's marks (`core.record.split_marks`), which the adapter never sees;
    in a search over several frameworks also the framework and model it chose (core/choice.py)."""
    # In a reused process (reuse_actors) this first frees what the last trial left in reference
    # cycles (its model, optimizer, data loaders), before this trial allocates its own.
    startup = StartupLog.begin()
    import torch
    from ray import tune

    startup.imports_done()
    torch.set_num_threads(max(1, int(settings.resources.cpus_per_trial)))
    trial_dir = _trial_output_dir(settings)
    hyperparameters, _ = split_marks(config)
    single, params = for_trial(settings, hyperparameters)  # the chosen framework's settings and own params
    context = TrialContext.for_experiment(single, trial_dir, trial_device(settings.resources.gpus_per_trial))
    adapter = get_adapter(single.sole_framework.name, single.sole_framework.backend)(
        {key: thaw(value) for key, value in params.items()}, context
    )
    startup.mark("adapter_built")
    evaluator = shared_evaluator(settings.data.val_json, settings.data.content_hash)
    startup.mark("evaluator_ready")
    node_id = _node_id()
    placement = {"segtune/device": context.device, **_gpu_identity(context.use_cuda)}
    started = time.perf_counter()
    last_epoch = 0
    cost = TrialCost(adapter, context.device)
    metric, mode = settings.objective.metric, settings.objective.mode
    score = RunningScore(mode)

    def on_epoch_end(epoch: int, native: dict[str, float]) -> None:
        nonlocal last_epoch
        cost.epoch_trained()
        _inject_fault(epoch, trial_dir, Path(settings.experiment_dir or trial_dir.parent))
        if last_epoch == 0:
            startup.mark("first_epoch_trained")
        eval_start = time.perf_counter()
        predictions = adapter.predict_val()
        metrics = evaluator.evaluate(predictions)
        eval_time = time.perf_counter() - eval_start
        result = {
            **metrics,
            **{k: v for k, v in native.items() if isinstance(v, (int, float)) and math.isfinite(v)},
            "epoch": epoch,
            "segtune/eval_time_s": eval_time,
            "segtune/num_predictions": len(predictions),
            "segtune/trial_time_s": time.perf_counter() - started,
            "segtune/node_id": node_id,
            **placement,
            "segtune/amp": int(adapter.amp_enabled),
            DIVERGED_KEY: 0,
        }
        result.update(cost.metrics(epoch))
        if metric not in result:
            result[metric] = worst_value(mode)
        result.update(score.add(result[metric]))
        if last_epoch == 0:  # before the report: a trial stopped at its first rung ends inside it
            startup.write(trial_dir, adapter.milestones, eval_time)
        # Staged outside the trial dir: Ray syncs that dir and must not see a half-made checkpoint.
        with tempfile.TemporaryDirectory(prefix="segtune-ckpt-") as tmp:
            adapter.save_checkpoint(Path(tmp))
            cost.save(Path(tmp))
            (Path(tmp) / SCORE_STATE_FILE).write_text(json.dumps(score.values))
            tune.report(result, checkpoint=tune.Checkpoint.from_directory(tmp))
        last_epoch = epoch
        cost.training_resumes()

    try:
        with _restored_checkpoint() as resume_from:
            cost.restore(resume_from)
            if resume_from is not None and (resume_from / SCORE_STATE_FILE).is_file():
                score.values = json.loads((resume_from / SCORE_STATE_FILE).read_text())
            adapter.train(on_epoch_end, resume_from)
    except _InjectedEarlyStop:
        return
    except TrainingDiverged as exc:
        # Divergence is a normal outcome of a search: end this trial with its reason and a worst-case
        # score (Optuna refuses NaN, and TPE should learn that this region is bad).
        failure = {key: 0.0 for key in METRIC_KEYS}
        failure.update({
            metric: worst_value(mode),
            SCORE_KEY: worst_value(mode),
            WINDOW_KEY: worst_value(mode),
            "epoch": last_epoch + 1,
            DIVERGED_KEY: 1,
            FAILURE_KEY: f"diverged: {exc}"[:500],
        })
        tune.report(failure)


def _inject_fault(epoch: int, trial_dir: Path, experiment_dir: Path) -> None:
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    kind, _, rest = spec.partition("@")
    at_epoch, _, scope = rest.partition(":")
    if epoch != int(at_epoch):
        return
    if scope in ("once", "first"):
        marker = (trial_dir if scope == "once" else experiment_dir) / ".segtune-fault-injected"
        try:
            marker.open("x").close()  # atomic: exactly one trial (or attempt) gets the fault
        except FileExistsError:
            return
    if kind == "stop":
        raise _InjectedEarlyStop()
    if kind == "exit":
        os._exit(3)  # the trial's process dies without a word, as after a segfault or OOM kill
    if kind == "oom":
        import torch

        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (injected fault)")
    raise RuntimeError(f"injected fault at epoch {epoch}")


def _trial_output_dir(settings: RunSettings) -> Path:
    """The trial's folder in the experiment directory itself. Ray's own trial dir is a local
    staging copy that Ray re-uploads with every experiment snapshot: framework output (weights,
    logs) written there would be copied again and again, and lost on other cluster nodes."""
    from ray import tune

    context = tune.get_context()
    if not settings.experiment_dir:
        return Path(context.get_trial_dir()).resolve()
    trial_dir = Path(settings.experiment_dir) / f"trial_{context.get_trial_id()}"
    trial_dir.mkdir(parents=True, exist_ok=True)
    return trial_dir


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
    return {"segtune/gpu_ids": ",".join(map(str, ids)),
            "segtune/gpu_uuid": str(torch.cuda.get_device_properties(0).uuid)}


@contextlib.contextmanager
def _restored_checkpoint() -> Iterator[Path | None]:
    """The latest checkpoint of this trial (after a resume or a retry), in a private temp dir that
    Ray does not sync, removed when the trial ends."""
    from ray import tune

    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="segtune-restore-") as tmp:
        checkpoint.to_directory(tmp)
        yield Path(tmp)
