"""What measuring each trial's cost (runners/trial/cost.py) costs, measured in one real search.

    python bench/cost_overhead.py [--framework yolo] [--backend auto] [--trials 2] [--epochs 8]

From the experiment's own per-epoch records (the default search space, on the demo data):
- measurements per trial (latency is timed after epochs 1, 2, 4, 8, ...) and seconds per measurement,
  also in steady epochs (an epoch's whole reported iteration: training + evaluation);
- the overhead's share of the trials' time, and what it would be for a trial of the default length
  on CPU (30 epochs YOLO, 12 Mask R-CNN: floor(log2 E) + 1 measurements);
- the latency the first and the last measurement of each trial gave (the model's number of instances
  changes as it learns, and with it the postprocessing).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CPU_EPOCHS = {"yolo": 30, "maskrcnn": 12}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--framework", default="yolo")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--trials", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=8)
    args = parser.parse_args()
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
        ]
        if args.framework == "maskrcnn":
            command += ["--backend", args.backend]
        proc = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)
        if proc.returncode != 0:
            print(proc.stdout[-3000:], proc.stderr[-3000:], sep="\n")
            return 1
        report(Path(tmp) / "bench", DEFAULT_CPU_EPOCHS.get(args.framework, args.epochs))
    return 0


def report(experiment: Path, default_epochs: int) -> None:
    per_measurement, in_epochs, shares, projected, latencies = [], [], [], [], []
    for result in sorted(experiment.glob("trial_*/result.json")):
        rows = [json.loads(line) for line in result.read_text().splitlines() if line.strip()]
        rows = [r for r in rows if "cost/latency_ms" in r]
        if not rows:
            continue
        measured = {r["cost/latency_epoch"]: r["cost/latency_ms"] for r in rows}
        overhead = rows[-1]["segtune/cost_time_s"]
        steady = (
            statistics.median(r["time_this_iter_s"] for r in rows[1:]) if len(rows) > 1 else rows[0]["time_this_iter_s"]
        )
        per_measurement.append(overhead / len(measured))
        in_epochs.append(per_measurement[-1] / steady)
        shares.append(overhead / rows[-1]["time_total_s"])
        measurements = math.floor(math.log2(default_epochs)) + 1
        projected.append(measurements * per_measurement[-1] / (default_epochs * steady))
        latencies.append(
            (measured[min(measured)], measured[max(measured)], max(measured), rows[-1]["segtune/num_predictions"])
        )
    if not per_measurement:
        print("no trial recorded costs")
        return
    print(f"{len(per_measurement)} trials of {rows[-1]['epoch']} epochs, measured on {rows[-1]['cost/device']}")
    print(
        f"one cost measurement: {statistics.median(per_measurement):.2f} s = "
        f"{statistics.median(in_epochs):.2f} steady epochs (median over trials)"
    )
    print(f"overhead in these trials: {100 * statistics.median(shares):.1f} % of trial time")
    print(
        f"overhead in a {default_epochs}-epoch trial (projected from the same figures): "
        f"{100 * statistics.median(projected):.1f} %"
    )
    for first, last, at, predictions in latencies:
        print(
            f"latency after epoch 1: {first:.1f} ms; after epoch {at}: {last:.1f} ms "
            f"(val predictions at the end: {predictions})"
        )


if __name__ == "__main__":
    sys.exit(main())
