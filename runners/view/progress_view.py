"""What the terminal shows while a search runs, as pure functions of a `SearchView` (no Ray, no I/O).

`runners/view/progress.py` feeds the view from Ray Tune's callback hooks and prints these lines: a live
block on a terminal (`live_block`), plain lines in a log (`start_line`, `epoch_line`, `end_line`,
`progress_line`). Every line fits `width` columns (a redrawn block must never wrap) except a
failed trial's end line, which keeps its whole error.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

from segtune.core.record import DIVERGED_KEY, FAILURE_KEY

SHOWN_PARAMS = 4
# PED-ANOVA on fewer finished trials ranks noise: on 8 synthetic trials whose score followed lr0 it
# gave the top four keys 0.11-0.14 each; on 16 it gave lr0 0.92. Until then, the space's first keys.
MIN_TRIALS_FOR_IMPORTANCE = 16
IMPORTANCE_EVERY = 8  # recompute after this many more trials have ended
BBOX_KEY = "bbox/AP"


@dataclass
class TrialView:
    name: str
    params: dict[str, Any]  # the searched parameters only
    status: str = "running"  # running | retrying | ended | failed
    epoch: int = 0
    best: float | None = None
    best_epoch: int = 0  # 0: not known (a trial that ended before a resume)
    latest: float | None = None
    bbox_at_best: float | None = None
    reason: str = ""
    ended_at: float | None = None  # seconds since the search started


@dataclass
class SearchView:
    metric: str
    mode: str
    max_epochs: int
    num_samples: int
    searched: list[str]  # in the space's order
    name: str = ""
    trials: dict[str, TrialView] = field(default_factory=dict)
    shown: list[str] = field(default_factory=list)  # the searched keys the lines show
    shown_by_importance: bool = False

    def __post_init__(self) -> None:
        if not self.shown:
            self.shown = self.searched[:SHOWN_PARAMS]

    def start(self, trial_id: str, params: dict[str, Any], epoch: int = 0) -> TrialView:
        trial = self.trials.get(trial_id)
        if trial is None:
            trial = self.trials[trial_id] = TrialView(f"trial_{trial_id}", dict(params))
        trial.status, trial.epoch = "running", max(trial.epoch, epoch)
        return trial

    def result(self, trial_id: str, result: dict[str, Any]) -> TrialView:
        trial = self.trials.get(trial_id) or self.start(trial_id, {})
        trial.epoch = int(result.get("training_iteration", trial.epoch + 1))
        if result.get(DIVERGED_KEY):  # a placeholder row with the worst score, not a measurement
            return trial
        value = _number(result.get(self.metric))
        if value is None:
            return trial
        trial.latest = value
        if trial.best is None or (value > trial.best if self.mode == "max" else value < trial.best):
            trial.best, trial.best_epoch, trial.bbox_at_best = value, trial.epoch, _number(result.get(BBOX_KEY))
        return trial

    def end(self, trial_id: str, reason: str, failed: bool, at: float) -> TrialView:
        trial = self.trials.get(trial_id) or self.start(trial_id, {})
        trial.status, trial.reason, trial.ended_at = ("failed" if failed else "ended"), reason, at
        return trial

    @property
    def running(self) -> list[TrialView]:
        return [t for t in self.trials.values() if t.status in ("running", "retrying")]

    @property
    def ended(self) -> list[TrialView]:
        return [t for t in self.trials.values() if t.status in ("ended", "failed")]

    @property
    def epochs_done(self) -> int:
        return sum(t.epoch for t in self.trials.values())

    @property
    def epoch_budget(self) -> int:
        """Most epochs the search can still spend: ended trials count what they ran, every other
        trial (running or not started) its full max_epochs. Shrinks as trials end early."""
        ended = self.ended
        return sum(t.epoch for t in ended) + max(0, self.num_samples - len(ended)) * self.max_epochs

    def leader(self) -> TrialView | None:
        scored = [t for t in self.trials.values() if t.best is not None]
        if not scored:
            return None
        pick = max if self.mode == "max" else min
        return pick(scored, key=lambda t: t.best)


def end_reason(
    *, error: str | None, last_result: dict[str, Any] | None, max_epochs: int, stopped_by_search: str | None = None
) -> str:
    """Why a trial ended, from what the driver saw: its error, its last result, its epochs.
    `stopped_by_search` names why the search itself stopped it (e.g. the time budget)."""
    result = last_result or {}
    epochs = int(result.get("training_iteration", 0) or 0)
    if error is not None:
        return f"failed in epoch {epochs + 1}: {error}"
    if result.get(DIVERGED_KEY):
        return str(result.get(FAILURE_KEY) or "diverged")
    if stopped_by_search:
        return f"stopped at {epochs}/{max_epochs} ({stopped_by_search})"
    if epochs >= max_epochs:
        return f"finished {epochs}/{max_epochs}"
    return f"stopped early {epochs}/{max_epochs}"


def important_params(view: SearchView, distributions: dict[str, Any]) -> list[str] | None:
    """The searched keys that matter most so far (Optuna's PED-ANOVA over ended trials, each
    scored by its best value), or None while too few trials have ended. Takes milliseconds."""
    import optuna

    scored = [t for t in view.ended if t.best is not None and set(distributions) <= set(t.params)]
    if len(scored) < MIN_TRIALS_FOR_IMPORTANCE:
        return None
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "A new study created" line on the terminal
    try:
        study = optuna.create_study(direction="maximize" if view.mode == "max" else "minimize")
    finally:
        optuna.logging.set_verbosity(verbosity)
    for trial in scored:
        try:
            study.add_trial(
                optuna.trial.create_trial(
                    params={k: trial.params[k] for k in distributions}, distributions=distributions, value=trial.best
                )
            )
        except ValueError:  # a value outside today's space (a resumed, edited search): leave it out
            continue
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ranked = optuna.importance.get_param_importances(
                study, evaluator=optuna.importance.PedAnovaImportanceEvaluator()
            )
    except (ValueError, RuntimeError, ZeroDivisionError):
        return None
    return list(ranked)[:SHOWN_PARAMS] or None


def clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def eta_seconds(view: SearchView, elapsed: float) -> float | None:
    """Upper bound of the time left: the unspent epoch budget at the pace so far."""
    done = view.epochs_done
    if done <= 0 or elapsed <= 0:
        return None
    return (view.epoch_budget - done) * elapsed / done


def value_text(value: Any) -> str:
    """A parameter value in at most ~8 characters."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return str(value)
    return f"{value:.3g}"


def metric_text(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3g}" if value != 0 and (abs(value) >= 1e4 or abs(value) < 1e-2) else f"{value:.2f}"


def params_text(trial: TrialView, keys: list[str], room: int = 1000) -> str:
    """`key=value` of the shown parameters, as many whole ones as fit in `room` characters."""
    text = ""
    for key in keys:
        if key in trial.params:
            item = f"{key}={value_text(trial.params[key])}"
            if len(text) + len(item) + bool(text) > room:
                break
            text = f"{text} {item}" if text else item
    return text


def fit(line: str, width: int) -> str:
    return line if len(line) <= width else line[: max(1, width - 1)] + "…"


def _stamp(at: float) -> str:
    return f"[{clock(at):>5}]"


def _score(view: SearchView, trial: TrialView) -> str:
    if trial.best is None:
        return "no score yet"
    text = f"best {_best(trial)}"
    if view.metric != BBOX_KEY and trial.bbox_at_best is not None:
        text += f" (bbox {metric_text(trial.bbox_at_best)})"
    return text


def start_line(view: SearchView, trial: TrialView, at: float, width: int) -> str:
    head = f"{_stamp(at)} {trial.name} started  "
    return fit(head + params_text(trial, view.shown, width - len(head)), width)


def epoch_line(view: SearchView, trial: TrialView, at: float, width: int) -> str:
    return fit(
        f"{_stamp(at)} {trial.name} epoch {trial.epoch}/{view.max_epochs}  "
        f"{view.metric} {metric_text(trial.latest)}  {_score(view, trial)}",
        width,
    )


def end_line(view: SearchView, trial: TrialView, width: int) -> str:
    """One line per ended trial: the reason, its score, its parameters. A failure's line is never
    cut: its error is the point (runners.cluster.last_line keeps 300 characters of it)."""
    reason = trial.reason
    if trial.status == "failed":
        return f"{_stamp(trial.ended_at or 0)} {trial.name} {reason}"
    head = f"{_stamp(trial.ended_at or 0)} {trial.name} {reason}  {_score(view, trial)}  "
    return fit(head + params_text(trial, view.shown, width - len(head)), width).rstrip()


def progress_line(view: SearchView, elapsed: float, width: int) -> str:
    """The budget in one line: epochs spent of at most how many, ETA, trials, the leader."""
    return fit(f"{_stamp(elapsed)} {_budget(view, elapsed)} · {_counts(view)} · {_leader(view)}", width)


def _budget(view: SearchView, elapsed: float) -> str:
    eta = eta_seconds(view, elapsed)
    budget = view.epoch_budget
    share = f"{100 * view.epochs_done / budget:.0f}%" if budget else "-"
    return f"{view.epochs_done}/<={budget} epochs ({share})" + (f", ETA <={duration(eta)}" if eta else "")


def _counts(view: SearchView) -> str:
    failed = sum(t.status == "failed" for t in view.trials.values())
    return (
        f"{len(view.ended)}/{view.num_samples} ended"
        + (f" ({failed} failed)" if failed else "")
        + f", {len(view.running)} running"
    )


def _leader(view: SearchView) -> str:
    leader = view.leader()
    if leader is None:
        return f"best {view.metric}: -"
    return f"best {view.metric} {_best(leader)}: {leader.name}"


def _best(trial: TrialView) -> str:
    if trial.best is None:
        return "-"
    return metric_text(trial.best) + (f"@{trial.best_epoch}" if trial.best_epoch else "")


def bar(done: int, total: int, cells: int, fill: str = "█", empty: str = "░") -> str:
    filled = 0 if total <= 0 else min(cells, math.floor(cells * done / total))
    return fill * filled + empty * (cells - filled)


def live_block(view: SearchView, elapsed: float, width: int, unicode: bool = True) -> list[str]:
    """The block redrawn on a terminal: a title, the epoch bar with ETA, the leader, a table of
    the running trials (status, epoch/max, best and latest metric, bbox AP, shown parameters)."""
    lines = [
        fit(
            f"{view.name} · {view.metric} ({view.mode}) · {_counts(view)} · elapsed {duration(elapsed)}"
            if view.name
            else f"{view.metric} ({view.mode}) · {_counts(view)} · elapsed {duration(elapsed)}",
            width,
        )
    ]
    fill, empty, le = ("█", "░", "≤") if unicode else ("#", "-", "<=")
    eta = eta_seconds(view, elapsed)
    budget = view.epoch_budget
    tail = f" {view.epochs_done}/{le}{budget} epochs" + (f"  ETA {le}{duration(eta)}" if eta else "")
    cells = max(10, min(40, width - len(tail) - 8))
    lines.append(fit(f"epochs {bar(view.epochs_done, budget, cells, fill, empty)}{tail}", width))
    lines.append(fit(_leader(view), width))
    running = view.running
    if running:
        keys = view.shown
        widths = [max(len(k), 8) for k in keys]
        header = f"  {'trial':<14}  {'status':<8} {'epoch':>7} {'best@ep':>10} {'bbox':>6} {'last':>7}  "
        header += " ".join(f"{k:<{w}}" for k, w in zip(keys, widths))
        lines.append(fit(header.rstrip() + ("   (by importance)" if view.shown_by_importance else ""), width))
        for trial in running:
            best = _best(trial)
            row = (
                f"  {trial.name:<14}  {trial.status:<8} {f'{trial.epoch}/{view.max_epochs}':>7} {best:>10} "
                f"{metric_text(trial.bbox_at_best):>6} {metric_text(trial.latest):>7}  "
            )
            row += " ".join(f"{value_text(trial.params.get(k, '-')):<{w}}" for k, w in zip(keys, widths))
            lines.append(fit(row.rstrip(), width))
    return lines


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
