"""Read the trials of a finished, running or copied experiment: shared by the summary, rank, report and export.

The trial list, statuses, configs and searched keys come from Ray's experiment snapshot
(experiment_state-*.json, read as JSON: no Ray import, no `ray.init`; trial directories are found by
name, so a copied experiment reads like the original). Per-epoch metrics are read from each trial's
`result.json` here rather than through Ray, because Ray drops a trial's whole history when the last
line is half-written (a running trial) and we want every complete line. When Ray's snapshot is missing
or unreadable (a search that just started, a partial copy) the trial directories alone are read.
Nothing is ever written into the experiment directory.
"""

from __future__ import annotations

import json
import math
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from segtune.analysis.pareto import rank_by_objectives
from segtune.analysis.ranking import rank_trials
from segtune.cocodata.evaluator import METRIC_KEYS
from segtune.core.choice import trial_framework
from segtune.core.errors import ExperimentError, UserError
from segtune.core.record import (
    CONFIRM_OF_KEY,
    CONFIRM_SEED_KEY,
    DIVERGED_KEY,
    END_ASHA,
    END_EPOCH_BUDGET,
    END_FRAMEWORK,
    END_REASON_FILE,
    END_TIME_BUDGET,
    FAILURE_KEY,
    OPTUNA_TRIAL_FILE,
    SETTINGS_FILE,
    RunSettings,
    default_mode,
    split_marks,
)
from segtune.core.score import best_window

# Ray's statuses of trials without results -> ours (the others are decided from their result rows).
_RAY_STATUS = {"RUNNING": "running", "PENDING": "pending", "PAUSED": "paused"}
# Why a "stopped" trial stopped (core.record END_*), as its status says it.
_STOPPED_BY = {
    END_ASHA: "stopped early by ASHA",
    END_TIME_BUDGET: "stopped by the time budget",
    END_EPOCH_BUDGET: "stopped by the epoch budget",
    END_FRAMEWORK: "stopped early by the framework itself (its own early stopping)",
}
_STOPPED_SHORT = {
    END_ASHA: "ASHA",
    END_TIME_BUDGET: "time budget",
    END_EPOCH_BUDGET: "epoch budget",
    END_FRAMEWORK: "framework",
}


@dataclass
class TrialSummary:
    trial_id: str
    path: Path
    status: str  # finished | stopped | diverged | failed | running | pending | paused
    detail: str  # status in words, e.g. "stopped early by ASHA at epoch 2"
    reason: str = ""  # why a trial diverged or failed
    # Why it ended, as the driver recorded it (core.record END_*; "" when not recorded: a running
    # trial, or an experiment made before segtune recorded it), and its trial in the Optuna study.
    end_reason: str = ""
    optuna_trial: int | None = None
    params: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)  # one row per completed epoch
    epochs: int = 0
    # The trial's score (core/score.py: its best mean of the metric over SCORE_WINDOW consecutive
    # epochs) and the epoch ending that window, whose checkpoint is the trial's best.
    best_epoch: int | None = None
    best_value: float | None = None
    best_metrics: dict[str, float] = field(default_factory=dict)  # segm/* and bbox/* at the best epoch
    last_metrics: dict[str, float] = field(default_factory=dict)  # ... and at the last epoch
    costs: dict[str, Any] = field(default_factory=dict)  # cost/* (runners/trial/cost.py) in the best epoch's row
    wall_time_s: float | None = None
    checkpoint: Path | None = None  # best epoch's checkpoint if kept, else the latest
    experiment: str = ""
    rank: int | None = None
    confirm_of: str | None = None  # a confirmation trial: the search trial whose configuration it retrains
    confirm_seed: int | None = None  # ... and which of its new seeds it is (1..S)
    framework: str = ""  # the framework it trained (in a search over several: the one it chose)
    model: str = ""  # ... and that framework's model
    pareto_rank: int | None = None  # several objectives: its front (1 = not dominated); None: no values

    @property
    def short_status(self) -> str:
        if self.status == "stopped":
            by = _STOPPED_SHORT.get(self.end_reason)
            where = "before epoch 1" if self.epochs == 0 else f"at epoch {self.epochs}"
            return f"stopped by {by} {where}" if by else f"stopped early {where}"
        if self.status == "diverged":
            return f"diverged at epoch {self.epochs + 1}"
        if self.status == "running":
            return f"running (epoch {self.epochs})"
        return self.status


@dataclass
class Experiment:
    path: Path
    settings: RunSettings
    trials: list[TrialSummary]
    metric: str
    mode: str
    searched: list[str]  # hyperparameters the search varied
    fixed: dict[str, Any]  # the rest, identical in every trial
    distributions: dict[str, Any]  # optuna distributions of the searched keys, when the space file is readable
    reader: str  # "ray" or "files": which reader found the trials

    @property
    def name(self) -> str:
        return self.path.name

    def metric_names(self) -> list[str]:
        names = {k for t in self.trials for row in t.history for k, v in row.items() if _is_number(v)}
        return sorted(names - {"training_iteration", "timestamp", "pid", "done"})


# ---- finding experiments ---------------------------------------------------------------------
def find_experiments(path: Path, framework: str | None = None) -> list[Path]:
    """`path` itself when it is an experiment, else the experiments directly inside it."""
    path = Path(path).expanduser()
    if not path.is_dir():
        raise ExperimentError(f"{path} is not a directory; pass an experiment directory (<storage>/<name>)")
    candidates = (
        [path]
        if (path / SETTINGS_FILE).is_file()
        else sorted(p for p in path.iterdir() if p.is_dir() and (p / SETTINGS_FILE).is_file())
    )
    if not candidates:
        raise ExperimentError(
            f"{path} is not a segtune experiment (no {SETTINGS_FILE}) and holds none; pass the directory "
            f"that runners/tune.py printed, <storage>/<name>"
        )
    if framework:
        kept = [p for p in candidates if _framework_of(p) == framework]
        if not kept:
            found = ", ".join(sorted({_framework_of(p) for p in candidates}))
            raise ExperimentError(f"no {framework} experiment in {path} (found: {found}); change --framework")
        candidates = kept
    return candidates


def _framework_of(path: Path) -> str:
    try:
        return ",".join(RunSettings.load(path).framework_names)
    except (OSError, ValueError, TypeError, KeyError):
        return "?"


def resolve_metric(settings: RunSettings, metric: str | None, mode: str | None) -> tuple[str, str]:
    """The ranking metric (default: the search's) and its direction (the search's, or guessed from the name)."""
    recorded = settings.objective
    metric = metric or recorded.metric
    if mode is None:
        mode = recorded.mode if metric == recorded.metric else default_mode(metric)
    return metric, mode


# ---- reading one experiment ------------------------------------------------------------------
def load_experiment(path: Path, metric: str | None = None, mode: str | None = None) -> Experiment:
    path = Path(path).expanduser().resolve()
    if not (path / SETTINGS_FILE).is_file():
        raise ExperimentError(f"{path} is not a segtune experiment (no {SETTINGS_FILE}); pass <storage>/<name>")
    try:
        settings = RunSettings.load(path)
    except ExperimentError:  # a record newer than this segtune: its one line names the file and the fix
        raise
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise ExperimentError(
            f"{path / SETTINGS_FILE} cannot be read ({exc}); was it written by runners/tune.py?"
        ) from None
    metric, mode = resolve_metric(settings, metric, mode)
    if mode not in ("max", "min"):
        raise ExperimentError(f"--mode must be max or min, got {mode!r}")

    ray_trials = snapshot_trials(path)
    reader = "ray" if ray_trials is not None else "files"
    by_dir = {Path(t["path"]).name: t for t in ray_trials or []}
    # Directories Ray's last snapshot does not know yet (a running search) are read from files too.
    for trial_dir in sorted(p for p in path.glob("trial_*") if p.is_dir()):
        by_dir.setdefault(
            trial_dir.name,
            {"path": str(trial_dir), "status": None, "config": None, "searched": None, "error_file": None},
        )
    trials = [_summarize_trial(path / name, info, settings, metric, mode) for name, info in by_dir.items()]

    searched, fixed, distributions = _split_params(settings, trials, ray_trials)
    experiment = Experiment(path, settings, trials, metric, mode, searched, fixed, distributions, reader)
    reported = any(metric in row for t in trials for row in t.history)
    recorded = settings.objective
    if not reported and metric not in METRIC_KEYS and metric != recorded.metric and any(t.history for t in trials):
        known = ", ".join(n for n in experiment.metric_names() if "/" in n)
        raise ExperimentError(f"metric {metric!r} was never reported in {path.name}; choose one of: {known}")
    rank_trials(trials, mode)
    if recorded.objectives and metric == recorded.metric:  # a search for a trade-off: by Pareto rank first
        rank_by_objectives(trials, list(recorded.objectives), metric)
    return experiment


def snapshot_trials(path: Path) -> list[dict[str, Any]] | None:
    """Trial facts from Ray's newest experiment snapshot, or None when it is missing or unreadable.

    The snapshot (experiment_state-<date>.json) is read as plain JSON: Ray's own reader
    (`ExperimentAnalysis`) costs seconds of imports and reads every trial's progress.csv again (the
    rows come from result.json here), and would unpickle the snapshot's embedded objects, which we
    never need. Trial directories are found by their names, so a copied experiment reads the same.
    """
    snapshots = sorted(path.glob("experiment_state-*.json"))  # the name holds the date: newest last
    if not snapshots:
        return None
    try:
        trial_data = json.loads(snapshots[-1].read_text())["trial_data"]
        trials = []
        for trial_json, metadata_json in trial_data:
            trial, metadata = json.loads(trial_json), json.loads(metadata_json)
            config = trial.get("config") or {}
            trials.append(
                {
                    "trial_id": trial.get("trial_id"),
                    "path": str(path / trial["relative_logdir"]),
                    "status": trial["status"],
                    # a value Ray could only pickle (never one of ours) -> read params.json instead
                    "config": None if "CLOUDPICKLE_FALLBACK" in json.dumps(config) else dict(config),
                    "searched": list((trial.get("evaluated_params") or {}).keys()),
                    "error_file": metadata.get("error_filename"),
                    "start_time": metadata.get("start_time"),  # when Ray started the trial (time.time())
                }
            )
    except (OSError, ValueError, KeyError, TypeError):  # being rewritten, another Ray version, ...: read the files
        return None
    return trials


def read_results(trial_dir: Path) -> list[dict[str, Any]]:
    """result.json rows, one per epoch; a half-written last line (a running trial) is skipped, and a
    repeated iteration (a trial resumed from an earlier checkpoint) keeps its latest row."""
    try:
        text = (trial_dir / "result.json").read_text(errors="replace")
    except OSError:
        return []
    rows: dict[int, dict[str, Any]] = {}
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict) and "training_iteration" in row:
            rows[int(row["training_iteration"])] = row
    return [rows[i] for i in sorted(rows)]


def _summarize_trial(
    trial_dir: Path, info: dict[str, Any], settings: RunSettings, metric: str, mode: str
) -> TrialSummary:
    rows = read_results(trial_dir)
    diverged = [r for r in rows if r.get(DIVERGED_KEY)]
    history = [r for r in rows if not r.get(DIVERGED_KEY)]  # the diverged row is a placeholder score
    config = info.get("config") or _read_params(trial_dir) or (rows[-1].get("config", {}) if rows else {})
    config, marks = split_marks(config)
    # runners/search/tuner.py names trial dirs trial_<id>; Ray's own names (<trainable>_<id>_...) hold more
    trial_id = (
        trial_dir.name.removeprefix("trial_")
        if trial_dir.name.startswith("trial_")
        else ((rows[-1].get("trial_id") if rows else None) or trial_dir.name)
    )
    summary = TrialSummary(
        trial_id=str(trial_id),
        path=trial_dir,
        status="pending",
        detail="",
        params=dict(config),
        history=history,
        epochs=_epoch(history[-1]) if history else 0,
        confirm_of=marks.get(CONFIRM_OF_KEY),
        confirm_seed=marks.get(CONFIRM_SEED_KEY),
    )
    summary.framework, summary.model = trial_framework(settings, config)
    summary.end_reason = str(_read_json(trial_dir / END_REASON_FILE).get("reason", ""))
    number = _read_json(trial_dir / OPTUNA_TRIAL_FILE).get("number")
    summary.optuna_trial = number if isinstance(number, int) else None
    _set_status(summary, info, diverged, rows, settings.budget.max_epochs)

    scored = [r for r in history if _is_number(r.get(metric))]
    if scored:  # the score as the trial reported it (core/score.py), recomputed for any --metric
        index, summary.best_value = best_window([float(r[metric]) for r in scored], mode)
        best = scored[index]
        summary.best_epoch = _epoch(best)
    else:
        best = history[-1] if history else None
    if best is not None:
        summary.best_metrics = {k: float(best[k]) for k in METRIC_KEYS if _is_number(best.get(k))}
        summary.costs = {
            k: v for k, v in best.items() if k.startswith("cost/") and (_is_number(v) or isinstance(v, str))
        }
    if history:
        summary.last_metrics = {k: float(history[-1][k]) for k in METRIC_KEYS if _is_number(history[-1].get(k))}
        summary.wall_time_s = float(history[-1].get("time_total_s") or 0.0) or None
    summary.checkpoint = _checkpoint(trial_dir, history, best)
    return summary


def _set_status(
    summary: TrialSummary, info: dict[str, Any], diverged: list[dict], rows: list[dict], max_epochs: int
) -> None:
    """Ray's snapshot is written every few seconds and lags behind the trial directories, so its status is
    reconciled with the files: Ray marks a trial's final result row `done` (ASHA's stop included)."""
    ray_status = info.get("status")
    error_text = _error_reason(summary.path, info.get("error_file"))
    done = bool(rows) and bool(rows[-1].get("done"))
    if diverged:
        summary.status, summary.reason = "diverged", str(diverged[-1].get(FAILURE_KEY) or "diverged")
        summary.detail = f"diverged at epoch {summary.epochs + 1}: {summary.reason}"
    elif ray_status == "ERROR" or (ray_status is None and error_text and not done):  # None: not in the snapshot
        summary.status, summary.reason = "failed", error_text or "unknown error (no error.txt)"
        summary.detail = f"failed after {summary.epochs} epoch(s): {summary.reason}"
    elif summary.epochs >= max_epochs and (done or ray_status == "TERMINATED"):
        summary.status, summary.detail = "finished", f"finished all {max_epochs} epochs"
    elif done or ray_status == "TERMINATED" or summary.end_reason in _STOPPED_BY:
        # Short but ended: the driver recorded who stopped it (runners/search/endings.py).
        summary.status = "stopped"
        words = _STOPPED_BY.get(summary.end_reason, "stopped early")
        where = "before its first epoch" if summary.epochs == 0 else f"at epoch {summary.epochs} of {max_epochs}"
        summary.detail = f"{words} {where}" + ("" if summary.end_reason else " (reason not recorded)")
    elif rows:
        summary.status, summary.detail = "running", f"running, {summary.epochs} of {max_epochs} epochs so far"
    elif ray_status in _RAY_STATUS:
        summary.status, summary.detail = _RAY_STATUS[ray_status], _RAY_STATUS[ray_status]
    else:
        summary.status, summary.detail = "pending", "no epoch reported yet"


def _error_reason(trial_dir: Path, error_file: str | None) -> str:
    """The last line of Ray's error.txt (the exception itself), else the pickled exception."""
    text_file = trial_dir / (error_file or "error.txt")
    if text_file.is_file():
        lines = [line.strip() for line in text_file.read_text(errors="replace").splitlines() if line.strip()]
        if lines:
            return lines[-1][:300]
    pickled = trial_dir / "error.pkl"
    if pickled.is_file():
        try:  # written by this experiment's own Ray driver, like the snapshot Ray's reader unpickles
            return str(pickle.loads(pickled.read_bytes())).strip().splitlines()[-1][:300]
        except Exception:
            return f"see {pickled}"
    return ""


def _read_params(trial_dir: Path) -> dict[str, Any]:
    return _read_json(trial_dir / "params.json")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _checkpoint(trial_dir: Path, history: list[dict], best: dict | None) -> Path | None:
    """Only checkpoints named by a result row: a row is written after its checkpoint is complete."""

    def usable(row: dict | None) -> Path | None:
        name = (row or {}).get("checkpoint_dir_name")
        if not name:
            return None
        candidate = trial_dir / str(name)
        return candidate if candidate.is_dir() and any(candidate.iterdir()) else None

    for row in [best, *reversed(history)]:
        found = usable(row)
        if found:
            return found
    return None


def _split_params(
    settings: RunSettings, trials: list[TrialSummary], ray_trials: list[dict] | None
) -> tuple[list[str], dict[str, Any], dict[str, Any]]:
    """Searched keys from Ray (what the searcher suggested), else from the recorded space, else the keys
    whose values differ between trials; distributions from the recorded space (for the importance study)."""
    keys = sorted({k for t in trials for k in t.params})
    # What the searcher suggested; a confirmation trial's suggestion (a new seed, marks) is no search.
    searched: set[str] = {
        k for t in ray_trials or [] if CONFIRM_OF_KEY not in (t.get("config") or {}) for k in t.get("searched") or []
    }
    distributions: dict[str, Any] = {}
    space = recorded_space(settings)
    if space is not None:
        distributions = {k: d for k, d in space.searched.items() if _all_contained(d, k, trials)}
        if not searched or settings.is_multi:  # Ray counts a framework's fixed values as suggested
            searched = set(space.searched) & set(keys)
    if not searched and not ray_trials and space is None:
        searched = {
            k for k in keys if len({json.dumps(t.params.get(k), sort_keys=True, default=str) for t in trials}) > 1
        }
    searches_first = sorted(trials, key=lambda t: t.confirm_of is not None)  # confirmations change the seed
    fixed = {k: next(t.params[k] for t in searches_first if k in t.params) for k in keys if k not in searched}
    return sorted(searched), fixed, {k: d for k, d in distributions.items() if k in searched}


def recorded_space(settings: RunSettings):
    """The experiment's search space as recorded in segtune.json; for records that only name a file
    (written before the space was stored inline: `{"source": path}` after core/migrate.py), that
    file if it is still there and still a space."""
    from segtune.search_spaces.space import SearchSpace, load_space

    if "searched" in settings.space:
        return SearchSpace.from_dict(settings.space)
    source = settings.space.get("source", "")
    if not source or not Path(source).is_file():
        return None
    try:
        return load_space(Path(source))
    except UserError:  # e.g. a --config file (extra top-level keys)
        return None


def _all_contained(distribution: Any, key: str, trials: list[TrialSummary]) -> bool:
    """The space file may have been edited since the search: use it only if it still covers every value."""
    from segtune.search_spaces.membership import holds
    from segtune.search_spaces.space import freeze

    try:
        for trial in trials:
            if key in trial.params:
                value = freeze(trial.params[key])
                if not holds(distribution, value):
                    return False
    except Exception:
        return False
    return True


# ---- small helpers -----------------------------------------------------------------------------
def _epoch(row: dict[str, Any]) -> int:
    return int(row.get("epoch") or row.get("training_iteration") or 0)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
