"""Where a trial's start-up time goes, and what a trial's worker process keeps for the next trial.

A trial writes `<trial dir>/startup.json` after its first epoch: wall-clock timestamps of its
process start, its entry into `run_trial`, its imports, its adapter and evaluator, the milestones
the adapter recorded (framework import, model built, data ready) and its first epoch, plus how many
trials its process had run before (0 = a fresh process; more when Ray reuses trial processes).
`bench/trial_overhead.py` turns these files into the start-up breakdown.

Things every trial of a process would otherwise build again (the COCO evaluator with its loaded
ground truth) are kept here, keyed by the content hash of the prepared dataset.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

STARTUP_FILE = "startup.json"

_trials_in_process = 0
_evaluators: dict[tuple[str, str], Any] = {}
_trial_streams: list[Any] = []  # sys.stdout and sys.stderr as the previous trial of this process had them


class StartupLog:
    """Timestamps (time.time(), seconds) of one trial's way to its first reported epoch."""

    def __init__(self) -> None:
        global _trials_in_process
        self.marks: dict[str, float] = {"trial_start": time.time()}
        self.trials_before = _trials_in_process
        _trials_in_process += 1

    @classmethod
    def begin(cls) -> StartupLog:
        """Start timing a trial; in a reused process, first free what the previous trial left."""
        log = cls()
        if log.trials_before:
            release_previous_trial()
            log.mark("previous_trial_released")
        _trial_streams[:] = [sys.stdout, sys.stderr]
        return log

    def imports_done(self) -> None:
        """The trial's heavy imports are in. In a fresh process, move the objects they made (about
        300k: torch, Ray) out of the garbage collector's sight, as they live as long as the process:
        every later collection, the one between reused trials included, then scans a third as much."""
        if not self.trials_before:
            gc.collect()
            gc.freeze()
        self.mark("imports_done")

    def mark(self, name: str) -> None:
        self.marks[name] = time.time()

    def write(self, trial_dir: Path, adapter_marks: dict[str, float], first_eval_s: float) -> None:
        record = {
            "pid": os.getpid(),
            "trials_before_in_process": self.trials_before,
            "process_start": _process_start(),
            **self.marks,
            "adapter": dict(adapter_marks),
            "first_eval_s": first_eval_s,
        }
        (Path(trial_dir) / STARTUP_FILE).write_text(json.dumps(record, indent=1))


def release_previous_trial() -> None:
    """A stopped trial's objects (trainer, model, data loaders and their worker processes, GPU
    tensors) may live on in reference cycles: collect them before the next trial allocates its own,
    and return cached GPU memory to the card (fractional GPUs share it with other trials)."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        torch.cuda.empty_cache()
    _follow_trial_streams()


def _follow_trial_streams() -> None:
    """Ray sends each trial's stdout and stderr to that trial's own files through new stream objects;
    a logging handler made during an earlier trial (a framework's logger, set up at its import)
    still holds that trial's streams, closed by now: hand it this trial's."""
    import logging

    if not _trial_streams:
        return
    old_out, old_err = _trial_streams
    named = logging.Logger.manager.loggerDict.values()
    loggers = [logging.getLogger(), *(x for x in named if isinstance(x, logging.Logger))]
    for handler in {h for logger in loggers for h in logger.handlers if type(h) is logging.StreamHandler}:
        if handler.stream is old_out:
            handler.setStream(sys.stdout)
        elif handler.stream is old_err:
            handler.setStream(sys.stderr)


def shared_evaluator(val_json: Path, content_hash: str):
    """The COCO evaluator of this dataset's val split, built once per process (ground truth loaded,
    normalised and converted to RLE once) and reused by every trial the process runs."""
    from segtune.cocodata.evaluator import CocoEvaluator

    key = (str(val_json), content_hash)
    if key not in _evaluators:
        _evaluators.clear()  # one dataset per search: keep no stale ground truth around
        _evaluators[key] = CocoEvaluator(val_json)
    return _evaluators[key]


def _process_start() -> float:
    import psutil  # a dependency of Ray

    return psutil.Process(os.getpid()).create_time()
