"""Fault injection for the failure-handling tests: a trial hook that segtune loads into real trials.

The tests name it in the search's environment (`fault_env`); the trial's process builds it through
segtune's seam for extra hooks (runners/trial/hooks.py: EXTRA_HOOKS_ENV) and the loop calls it after
each trained epoch, before anything of that epoch is evaluated or reported.

A fault is "KIND@EPOCH[:SCOPE]":
  KIND   raise (a RuntimeError), oom (CUDA out of memory), exit (the process dies without a word,
         as after a segfault or an OOM kill) or stop (training ends before that epoch, as a
         framework's own early stopping ends it)
  SCOPE  every (default), once (each trial once: a retry succeeds) or first (one trial only)
"""

from __future__ import annotations

import os
from pathlib import Path

from segtune.runners.trial.hooks import EXTRA_HOOKS_ENV, StopTraining, TrialHook, TrialStart

MARKER = ".segtune-fault-injected"  # in the trial dir (once) or the experiment dir (first)


def fault_env(fault: str) -> dict[str, str]:
    """The environment entries that give every trial of a search `fault`."""
    return {EXTRA_HOOKS_ENV: f"{Path(__file__).resolve()}:Fault={fault}"}


class Fault(TrialHook):
    """Injects one fault at the end of a given epoch."""

    def __init__(self, fault: str) -> None:
        self.kind, _, rest = fault.partition("@")
        at_epoch, _, scope = rest.partition(":")
        if self.kind not in ("raise", "oom", "exit", "stop") or scope not in ("", "every", "once", "first"):
            raise ValueError(f"bad fault {fault!r}: write KIND@EPOCH[:SCOPE]")
        self.epoch = int(at_epoch)
        self.scope = scope or "every"
        self.marker: Path | None = None

    def before_train(self, start: TrialStart) -> None:
        if self.scope != "every":
            self.marker = (start.trial_dir if self.scope == "once" else start.experiment_dir) / MARKER

    def epoch_trained(self, epoch: int) -> None:
        if epoch != self.epoch or not self._claimed():
            return
        if self.kind == "stop":
            raise StopTraining()
        if self.kind == "exit":
            os._exit(3)
        if self.kind == "oom":
            import torch

            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (injected fault)")
        raise RuntimeError(f"injected fault at epoch {epoch}")

    def _claimed(self) -> bool:
        """Whether this trial gets the fault: always, or once as the marker file says."""
        if self.marker is None:
            return True
        try:
            self.marker.open("x").close()  # atomic: exactly one trial (or attempt) gets the fault
        except FileExistsError:
            return False
        return True
