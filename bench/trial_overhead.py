"""Per-trial overhead of a real search, measured in one run and printed as ratios.

    python bench/trial_overhead.py [--framework yolo] [--trials 4] [--epochs 3]

What it measures, from the experiment's own per-epoch records:
- startup: first reported iteration minus a steady epoch (process start, imports, model build,
  data loading) — the price of one trial, in seconds and in epochs;
- evaluation: the shared COCO evaluation's share of an epoch;
- slot use: trial time summed / (wall time x concurrent slots) — how busy the workers were,
  including Ray's scheduling gaps between trials.
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

REPO_ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--framework", default="yolo")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        command = [
            sys.executable, "runners/tune.py", "--framework", args.framework, "--num-samples", str(args.trials),
            "--max-epochs", str(args.epochs), "--grace-period", str(args.epochs), "--storage", tmp,
            "--name", "bench", "--cache-dir", str(Path(tmp) / "cache"),
        ]
        if args.framework == "maskrcnn":
            command += ["--backend", args.backend]
        started = time.perf_counter()
        proc = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)
        wall = time.perf_counter() - started
        if proc.returncode != 0:
            print(proc.stdout[-3000:], proc.stderr[-3000:], sep="\n")
            return 1
        slots = int(proc.stdout.split(" at a time")[0].rsplit(" ", 1)[-1])
        report(Path(tmp) / "bench", wall, slots)
    return 0


def report(experiment: Path, wall: float, slots: int) -> None:
    startups, epochs, evals, totals = [], [], [], []
    for result in sorted(experiment.glob("trial_*/result.json")):
        rows = [json.loads(line) for line in result.read_text().splitlines() if line.strip()]
        steady = statistics.median(r["time_this_iter_s"] for r in rows[1:]) if len(rows) > 1 else rows[0]["time_this_iter_s"]
        startups.append(rows[0]["time_this_iter_s"] - steady)
        epochs.append(steady)
        evals += [r["segtune/eval_time_s"] / r["time_this_iter_s"] for r in rows[1:]]
        totals.append(rows[-1]["time_total_s"])
    epoch = statistics.median(epochs)
    startup = statistics.median(startups)
    print(f"trials: {len(totals)}, concurrent slots: {slots}, wall: {wall:.1f} s (driver start included)")
    print(f"steady epoch: {epoch:.2f} s; per-trial startup: {startup:.2f} s = {startup / epoch:.2f} epochs")
    print(f"COCO evaluation share of an epoch: {statistics.median(evals):.1%}" if evals else "")
    print(f"slot use (trial time / (wall x slots)): {sum(totals) / (wall * slots):.1%}")


if __name__ == "__main__":
    sys.exit(main())
