"""Per-trial overhead of a real search, measured in one run and printed as ratios.

    python bench/trial_overhead.py [--framework yolo] [--trials 4] [--epochs 3] [--metric segm/AP ...]

What it measures, from the experiment's own records (result.json rows, each trial's startup.json
written by `runners/trial/startup.py`, Ray's trial start times in experiment_state-*.json):
- startup: a trial's first report minus its launch (its process start for a fresh process; Ray's
  trial start for a reused one) minus a steady epoch — the price of one trial, in seconds and in
  epochs, for fresh and reused trial processes, with a breakdown of where it goes;
- evaluation: the shared COCO evaluation's share of an epoch;
- slot use: trial time summed / (wall time x concurrent slots) — how busy the workers were,
  including the driver's own start and Ray's scheduling gaps between trials.
Several --metric values run one search each, one after another, and compare their epochs (e.g.
`segm/AP`, one pass over the val set per epoch, against `yolo/val/seg_loss`, which needs
Ultralytics' own validation too).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from segtune.analysis.trials import read_results, snapshot_trials

REPO_ROOT = Path(__file__).resolve().parents[1]

# startup.json marks in the order a trial passes them: (mark, label of the phase that ends there)
PHASES = (
    ("trial_start", "process start -> run_trial (Ray worker, trainable)"),
    ("previous_trial_released", "free the previous trial (gc, log streams)"),
    ("imports_done", "imports (torch, ray.tune)"),
    ("evaluator_ready", "adapter + COCO evaluator"),
    ("framework_imported", "framework import"),
    ("model_built", "model build"),
    ("data_ready", "data loaders, image cache, optimizer"),
    ("first_batch", "first training batch"),
    ("first_epoch_trained", "rest of the first epoch"),
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--framework", default="yolo")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--metric", action="append", help="search metric (repeat to compare; default segm/AP)")
    args = parser.parse_args()
    epochs = {}
    for metric in args.metric or ["segm/AP"]:
        print(f"== {args.framework}, {args.trials} trials x {args.epochs} epochs, --metric {metric}")
        epoch = run_search(args, metric)
        if epoch is None:
            return 1
        epochs[metric] = epoch
    if len(epochs) > 1:
        base = next(iter(epochs))
        for metric, epoch in list(epochs.items())[1:]:
            print(f"steady epoch with --metric {base} / with --metric {metric}: {epochs[base] / epoch:.2f}")
    return 0


def run_search(args, metric: str) -> float | None:
    with tempfile.TemporaryDirectory() as tmp:
        command = [
            sys.executable,
            "runners/tune.py",
            "--framework",
            args.framework,
            "--num-samples",
            str(args.trials),
            "--max-epochs",
            str(args.epochs),
            "--grace-period",
            str(args.epochs),
            "--storage",
            tmp,
            "--name",
            "bench",
            "--cache-dir",
            str(Path(tmp) / "cache"),
            "--metric",
            metric,
            "--confirm-top",
            "0",  # exactly --trials trials: the figures compare with runs before confirmation
        ]
        if args.framework == "maskrcnn":
            command += ["--backend", args.backend]
        started, clock = time.perf_counter(), time.time()
        proc = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)
        wall = time.perf_counter() - started
        if proc.returncode != 0:
            print(proc.stdout[-3000:], proc.stderr[-3000:], sep="\n")
            return None
        slots = int(proc.stdout.split(" at a time")[0].rsplit(" ", 1)[-1])
        return report(Path(tmp) / "bench", wall, slots, clock)


def report(experiment: Path, wall: float, slots: int, clock: float) -> float:
    ray_starts = _ray_start_times(experiment)
    trials = [_trial(d, ray_starts.get(d.name.removeprefix("trial_"))) for d in sorted(experiment.glob("trial_*"))]
    trials = [t for t in trials if t is not None]
    epoch = statistics.median(t["steady"] for t in trials)
    evals = [share for t in trials for share in t["eval_shares"]]
    print(f"trials: {len(trials)}, concurrent slots: {slots}, wall: {wall:.1f} s (driver start included)")
    print(
        f"steady epoch: {epoch:.2f} s; COCO evaluation share of an epoch: {statistics.median(evals):.1%}"
        if evals
        else f"steady epoch: {epoch:.2f} s"
    )
    for kind, group in (
        ("fresh", [t for t in trials if not t["reused"]]),
        ("reused", [t for t in trials if t["reused"]]),
    ):
        if not group:
            continue
        startup = statistics.median(t["startup"] for t in group)
        print(
            f"per-trial startup, {kind} process ({len(group)} trials): {startup:.2f} s = {startup / epoch:.2f} epochs"
        )
        for label in dict.fromkeys(label for t in group for label in t["phases"]):
            values = [t["phases"][label] for t in group if label in t["phases"]]
            print(f"    {label:<52} {statistics.median(values):6.2f} s")
    in_trial = statistics.median(t["in_trial_startup"] for t in trials)
    print(
        f"startup inside the trial (first iteration - steady epoch; earlier versions' figure): "
        f"{in_trial:.2f} s = {in_trial / epoch:.2f} epochs"
    )
    first_launch, last_report = min(t["launch"] for t in trials), max(t["end"] for t in trials)
    print(
        f"driver: {first_launch - clock:.1f} s from the command to the first trial process (Ray start, data "
        f"preparation), {clock + wall - last_report:.1f} s from the last report to its exit"
    )
    held = sum(t["total"] for t in trials)
    reported = sum(t["reported_time"] for t in trials)
    print(
        f"slot use (trial time from launch / (wall x slots)): {held / (wall * slots):.1%}; "
        f"counting Ray's time_total_s only (earlier versions' figure): {reported / (wall * slots):.1%}; "
        f"from the first launch to the last report (without the driver's start and exit): "
        f"{held / ((last_report - first_launch) * slots):.1%}"
    )
    return epoch


def _trial(trial_dir: Path, ray_start: float | None) -> dict | None:
    rows = read_results(trial_dir)
    startup_file = trial_dir / "startup.json"
    if not rows or not startup_file.is_file():
        return None
    marks = json.loads(startup_file.read_text())
    reused = marks["trials_before_in_process"] > 0
    # Ray times iterations from its start of the trial (its process ready); result timestamps are
    # whole seconds, so report times are Ray's start plus its own iteration times.
    ray_start = ray_start or marks["trial_start"]
    launch = ray_start if reused else marks["process_start"]
    first_report, last_report = ray_start + rows[0]["time_this_iter_s"], ray_start + rows[-1]["time_total_s"]
    steady = (
        statistics.median(r["time_this_iter_s"] for r in rows[1:]) if len(rows) > 1 else rows[0]["time_this_iter_s"]
    )
    times = {
        "process_start": marks["process_start"],
        **{k: v for k, v in marks.items() if isinstance(v, float)},
        **marks["adapter"],
    }
    phases, previous = {}, launch
    for mark, label in PHASES:
        if mark in times and times[mark] >= previous - 1e-3:
            phases[label] = times[mark] - previous
            previous = times[mark]
    phases["first evaluation"] = marks["first_eval_s"]
    phases["first report (checkpoint, Ray)"] = first_report - previous - marks["first_eval_s"]
    phases["steady epoch, for comparison"] = steady
    return {
        "reused": reused,
        "steady": steady,
        "startup": first_report - launch - steady,
        "in_trial_startup": rows[0]["time_this_iter_s"] - steady,
        "reported_time": rows[-1]["time_total_s"],
        "phases": phases,
        "eval_shares": [r["segtune/eval_time_s"] / r["time_this_iter_s"] for r in rows[1:]],
        # a trial holds its slot from its launch (a fresh process included) to its last report
        "total": last_report - launch,
        "launch": launch,
        "end": last_report,
    }


def _ray_start_times(experiment: Path) -> dict[str, float]:
    """Ray's start time of each trial (when its process was ready: a reused one at once)."""
    return {t["trial_id"]: t["start_time"] for t in snapshot_trials(experiment) or [] if t["start_time"]}


if __name__ == "__main__":
    sys.exit(main())
