"""The search's terminal output: one compact view instead of Ray Tune's tables.

`SearchProgress` is a Ray Tune callback in the driver. It keeps a `SearchView` (runners/view/progress_view.py)
from the trial events and shows it: on a terminal, a block redrawn in place (epoch bar, ETA, one row
per running trial) under one permanent line per ended trial; in a log (CI, a file), plain lines — a
trial started, a trial ended and why, a progress line every minute. What a trial writes (results,
framework files, the traceback of a failure) stays in its folder. Output modes: quiet (failures
only), default, verbose (Ray's own output too, plus a line per epoch).
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from ray.tune import Callback

from segtune.core.record import DIVERGED_KEY
from segtune.runners.cluster.connect import last_line
from segtune.runners.view.progress_view import (
    IMPORTANCE_EVERY,
    SearchView,
    TrialView,
    clock,
    end_line,
    end_reason,
    epoch_line,
    important_params,
    live_block,
    progress_line,
    start_line,
)

OUTPUT_MODES = ("quiet", "default", "verbose")
LOG_WIDTH = 120
PROGRESS_EVERY_S = 60.0  # a progress line in a log at most this often
REDRAW_EVERY_S = 0.5  # the live block at most this often
# Messages of Ray's that the view replaces (the failure line, the summary's counts) or that tell
# nothing in a local run. "Token authentication is disabled" is a warning and stays.
_RAY_NOTICES = {
    "ray.tune.tune": "Trials did not complete",
    "ray._private.authentication.authentication_token_setup": "Token authentication is enabled",
}


def ray_verbosity(output: str) -> int:
    """`RunConfig.verbose` for an output mode: Ray prints nothing of its own unless asked to."""
    return 2 if output == "verbose" else 0


def quiet_libraries(output: str) -> None:
    """Ray's and Optuna's own console output for this mode; call it before Ray starts."""
    if output == "verbose":
        return
    # Ray 2.60's default output engine still prints, at verbose=0, an experiment table, a
    # `tensorboard --logdir` hint into Ray's temporary session folder, and a result table for each
    # failed trial. Its legacy engine prints nothing at verbose=0.
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    # A failed trial's traceback is in its error.txt; the view prints the error's last line.
    os.environ["TUNE_PRINT_ALL_TRIAL_ERRORS"] = "0"
    for logger_name, prefix in _RAY_NOTICES.items():
        logging.getLogger(logger_name).addFilter(_DropMessages(prefix))
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)


class _DropMessages(logging.Filter):
    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefix)


class SearchProgress(Callback):
    """Driver-side Ray Tune callback that shows the search. Only its options are pickled (Ray
    stores callbacks in the experiment's tuner.pkl); the view starts fresh in `setup`."""

    def __init__(
        self,
        *,
        metric: str,
        mode: str,
        max_epochs: int,
        searched: dict[str, Any],
        experiment_dir: str,
        output: str = "default",
        time_budget: float | None = None,
    ) -> None:
        self.options = dict(
            metric=metric,
            mode=mode,
            max_epochs=max_epochs,
            searched=dict(searched),
            experiment_dir=str(experiment_dir),
            output=output,
            time_budget=time_budget,
        )
        self._reset()

    def __getstate__(self) -> dict:
        return {"options": self.options}

    def __setstate__(self, state: dict) -> None:
        self.options = state["options"]
        self._reset()

    def _reset(self) -> None:
        self._view: SearchView | None = None
        self._printer: _Printer | None = None
        self._started = time.monotonic()
        self._importance_at = 0  # ended trials when the shown parameters were last ranked

    # Ray's hooks ----------------------------------------------------------------------------
    def setup(self, stop=None, num_samples: int | None = None, total_num_samples: int | None = None, **info) -> None:
        o = self.options
        self._started = time.monotonic()
        self._view = SearchView(
            o["metric"],
            o["mode"],
            o["max_epochs"],
            int(total_num_samples or num_samples or 1),
            list(o["searched"]),
            name=Path(o["experiment_dir"]).name,
        )
        self._printer = _make_printer(o["output"], sys.stdout)
        self._printer.intro(f"segtune: each trial's results, files and errors: {o['experiment_dir']}/trial_<id>/")

    def on_step_begin(self, iteration: int, trials: list, **info) -> None:
        if self._view is not None and not self._view.trials:
            self._adopt_restored(trials)

    def on_step_end(self, iteration: int, trials: list, **info) -> None:
        if self._view is not None:
            self._printer.tick(self._view, self._elapsed())

    def on_trial_start(self, iteration: int, trials: list, trial, **info) -> None:
        params = {key: trial.config[key] for key in self.options["searched"] if key in trial.config}
        started = self._view.start(trial.trial_id, params, epoch=_epochs(trial.last_result))
        self._printer.started(self._view, started, self._elapsed())

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info) -> None:
        updated = self._view.result(trial.trial_id, result)
        self._printer.epoch(self._view, updated, self._elapsed())

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        reason = end_reason(error=None, last_result=trial.last_result, max_epochs=self.options["max_epochs"])
        self._ended(trial.trial_id, reason, failed=False)

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        reason = end_reason(
            error=_error_text(trial), last_result=trial.last_result, max_epochs=self.options["max_epochs"]
        )
        self._ended(trial.trial_id, reason, failed=True)

    def on_trial_recover(self, iteration: int, trials: list, trial, **info) -> None:
        retrying = self._view.start(trial.trial_id, {}, epoch=_epochs(trial.last_result))
        retrying.status = "retrying"
        self._printer.failure(
            f"[{clock(self._elapsed()):>5}] {retrying.name} failed in epoch {retrying.epoch + 1}: "
            f"{_error_text(trial)}; retrying from its last checkpoint"
        )

    def on_experiment_end(self, trials: list, **info) -> None:
        if self._view is None:
            return
        budget = self.options["time_budget"]
        why = "the time budget ran out" if budget and self._elapsed() >= budget * 0.99 else "the search was stopped"
        for trial in trials:  # Ray stops the trials still running without telling callbacks
            shown = self._view.trials.get(trial.trial_id)
            if shown is not None and shown.status in ("running", "retrying"):
                reason = end_reason(
                    error=None,
                    last_result=trial.last_result,
                    max_epochs=self.options["max_epochs"],
                    stopped_by_search=why,
                )
                self._ended(trial.trial_id, reason, failed=False)
        self._printer.close(self._view, self._elapsed())

    # ------------------------------------------------------------------------------------------
    def _elapsed(self) -> float:
        return time.monotonic() - self._started

    def _ended(self, trial_id: str, reason: str, failed: bool) -> None:
        ended = self._view.end(trial_id, reason, failed, self._elapsed())
        self._printer.ended(self._view, ended, self._elapsed())
        done = len(self._view.ended)
        if done - self._importance_at >= IMPORTANCE_EVERY:
            self._importance_at = done
            ranked = important_params(self._view, self.options["searched"])
            if ranked and ranked != self._view.shown:
                self._view.shown, self._view.shown_by_importance = ranked, True
                self._printer.note(
                    f"[{clock(self._elapsed()):>5}] parameters shown from now on, the most important "
                    f"so far (Optuna PED-ANOVA over {done} ended trials): {' '.join(ranked)}"
                )

    def _adopt_restored(self, trials: list) -> None:
        """A resumed search: trials that ended before count in the budget and the leader."""
        metric, mode = self.options["metric"], self.options["mode"]
        for trial in trials:
            if trial.status not in ("TERMINATED", "ERROR") or not trial.last_result:
                continue
            params = {key: trial.config[key] for key in self.options["searched"] if key in trial.config}
            adopted = self._view.start(trial.trial_id, params, epoch=_epochs(trial.last_result))
            best = (trial.metric_analysis.get(metric) or {}).get(mode)
            if best is not None and not trial.last_result.get(DIVERGED_KEY):
                adopted.best = adopted.latest = float(best)
            failed = trial.status == "ERROR"
            reason = end_reason(
                error="(before the resume)" if failed else None,
                last_result=trial.last_result,
                max_epochs=self.options["max_epochs"],
            )
            self._view.end(trial.trial_id, reason, failed, 0.0)


def _epochs(result: dict | None) -> int:
    return int((result or {}).get("training_iteration", 0) or 0)


def _error_text(trial) -> str:
    try:
        return last_line(Path(trial.error_file).read_text()) if trial.error_file else "unknown error"
    except OSError:
        return "unknown error (see the trial's error.txt)"


def _make_printer(output: str, stream: TextIO) -> _Printer:
    live = output == "default" and stream.isatty() and os.environ.get("TERM", "") != "dumb"
    return (_LivePrinter if live else _Printer)(stream, output)


class _Printer:
    """Plain lines, for logs (and for --quiet and --verbose on a terminal)."""

    def __init__(self, stream: TextIO, output: str) -> None:
        self.stream, self.output = stream, output
        self._last_progress = 0.0
        self._epochs_at_progress = 0

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()

    def intro(self, line: str) -> None:
        if self.output != "quiet":
            self._write(line + "\n")

    def failure(self, line: str) -> None:
        self._write(line + "\n")

    def note(self, line: str) -> None:
        if self.output != "quiet":
            self.failure(line)

    def started(self, view: SearchView, trial: TrialView, elapsed: float) -> None:
        if self.output != "quiet":
            self._write(start_line(view, trial, elapsed, LOG_WIDTH) + "\n")

    def epoch(self, view: SearchView, trial: TrialView, elapsed: float) -> None:
        if self.output == "verbose":
            self._write(epoch_line(view, trial, elapsed, LOG_WIDTH) + "\n")

    def ended(self, view: SearchView, trial: TrialView, elapsed: float) -> None:
        if self.output != "quiet" or trial.status == "failed":
            self._write(end_line(view, trial, LOG_WIDTH) + "\n")

    def tick(self, view: SearchView, elapsed: float) -> None:
        if self.output == "quiet" or elapsed - self._last_progress < PROGRESS_EVERY_S:
            return
        if view.epochs_done > self._epochs_at_progress:
            self._write(progress_line(view, elapsed, LOG_WIDTH) + "\n")
            self._epochs_at_progress = view.epochs_done
        self._last_progress = elapsed

    def close(self, view: SearchView, elapsed: float) -> None:
        if self.output != "quiet":
            self._write(progress_line(view, elapsed, LOG_WIDTH) + "\n")


class _LivePrinter(_Printer):
    """A block redrawn in place at the bottom of the terminal; ended trials scroll above it."""

    def __init__(self, stream: TextIO, output: str) -> None:
        super().__init__(stream, output)
        self._drawn = 0  # lines of the block now on screen
        self._last_draw = 0.0
        self._unicode = "utf" in (getattr(stream, "encoding", "") or "").lower()

    @staticmethod
    def _width() -> int:  # one column spare: a line that fills the last column wraps on some terminals
        return max(40, shutil.get_terminal_size((LOG_WIDTH + 1, 24)).columns - 1)

    def _redraw(self, view: SearchView, elapsed: float, above: str = "") -> None:
        block = live_block(view, elapsed, self._width(), self._unicode)
        erase = f"\x1b[{self._drawn}A\r\x1b[J" if self._drawn else ""
        self._write(erase + above + "".join(line + "\n" for line in block))
        self._drawn, self._last_draw = len(block), elapsed

    def started(self, view: SearchView, trial: TrialView, elapsed: float) -> None:
        self._redraw(view, elapsed)

    def epoch(self, view: SearchView, trial: TrialView, elapsed: float) -> None:
        if elapsed - self._last_draw >= REDRAW_EVERY_S / 5:
            self._redraw(view, elapsed)

    def ended(self, view: SearchView, trial: TrialView, elapsed: float) -> None:
        self._redraw(view, elapsed, above=end_line(view, trial, min(LOG_WIDTH, self._width())) + "\n")

    def failure(self, line: str) -> None:
        erase = f"\x1b[{self._drawn}A\r\x1b[J" if self._drawn else ""
        self._write(erase + line + "\n")
        self._drawn = 0

    def tick(self, view: SearchView, elapsed: float) -> None:
        if elapsed - self._last_draw >= REDRAW_EVERY_S:
            self._redraw(view, elapsed)

    def close(self, view: SearchView, elapsed: float) -> None:
        self._redraw(view, elapsed)  # the final state stays on screen above the summary
        self._drawn = 0
