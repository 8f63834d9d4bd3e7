"""The seed-to-seed spread of the default configuration on one dataset (issue 9, item 3): what
difference between two trials is noise.

    python bench/seed_spread.py                                   # demo data, 5 seeds x 30 epochs
    python bench/seed_spread.py --data ../shared/datasets/microcontroller_seg --imgsz 192 --max-epochs 15

Each seed is a real one-trial search, `runners/tune.py --num-samples 1 --confirm-top 0 --seed K`, whose
only trial is the search's first one: the framework's defaults (for YOLO what Ultralytics' optimizer
'auto' picks), the fixed values of the default CPU search space, and the training seed K. Nothing
but the seed changes from run to run. Printed: each seed's score (`segtune/score`, the best 3-epoch
mean of segm/AP), its best and last segm/AP, then the mean and standard deviation over seeds and the
differences that noise alone explains 19 times in 20 (two single-seed trials: 1.96 x sqrt(2) x sd;
two means of S confirmation seeds each: that / sqrt(S)).

Resumable: a seed whose run finished (OUT/seed<K>.json) is kept. Raw numbers: OUT/spread.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]

METRIC = "segm/AP"
Z95 = 1.96


def noise_figures(scores: Sequence[float], confirm_seeds: int = 2) -> dict[str, float]:
    """Mean, sd, and the largest difference noise explains 19 times in 20, between two single-seed
    trials and between two means of `confirm_seeds` seeds (normal approximation, sd pooled as one)."""
    if len(scores) < 2:
        raise ValueError("a spread needs at least 2 seeds")
    sd = statistics.stdev(scores)
    single = Z95 * math.sqrt(2) * sd
    return {
        "mean": statistics.fmean(scores),
        "sd": sd,
        "noise_single": single,
        "noise_confirmed": single / math.sqrt(confirm_seeds),
    }


def seed_result(experiment: Path) -> dict[str, Any] | None:
    """The one trial's score, best and last segm/AP, read by segtune's own experiment reader
    (None without a reported epoch)."""
    from segtune.analysis.trials import load_experiment
    from segtune.core.errors import ExperimentError

    try:
        trials = load_experiment(experiment).trials
    except ExperimentError:
        return None
    if len(trials) != 1 or not trials[0].history or trials[0].best_value is None:
        return None
    trial = trials[0]
    best = max(trial.history, key=lambda row: float(row.get(METRIC) or 0.0))
    return {
        "score": trial.best_value,
        "best": float(best.get(METRIC) or 0.0),
        "best_epoch": int(best["training_iteration"]),
        "last": float(trial.last_metrics.get(METRIC) or 0.0),
        "epochs": trial.epochs,
        "params": trial.params,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--framework", default="yolo", choices=["yolo", "maskrcnn"])
    parser.add_argument("--data", type=Path, default=None, help="a COCO dataset (default: the demo set)")
    parser.add_argument("--imgsz", type=int, default=None, help="YOLO only: the space's imgsz for this data")
    parser.add_argument("--max-epochs", type=int, default=30)
    parser.add_argument("--seeds", type=int, default=5, help="training seeds 0 .. N-1 (at least 2)")
    parser.add_argument("--confirm-seeds", type=int, default=2, help="for the noise between confirmed means")
    parser.add_argument("--out", type=Path, default=None, help="default runs/bench-seed-spread/<framework>-<data>")
    parser.add_argument("--cache-dir", type=Path, default=Path("~/.cache/segtune"))
    args = parser.parse_args(argv)
    if args.seeds < 2:
        parser.error("--seeds: a spread needs at least 2 seeds")
    if args.imgsz is not None and args.framework != "yolo":
        parser.error("--imgsz is YOLO's; for Mask R-CNN set INPUT sizes in a --space file of runners/tune.py")
    if args.data is not None:
        args.data = args.data.expanduser().resolve()  # tune.py runs in the repository's root
        if not args.data.is_dir():
            parser.error(f"--data {args.data} is not a directory; give a COCO dataset's folder")
    name = args.data.name if args.data else "demo"
    out = (args.out or REPO_ROOT / "runs" / "bench-seed-spread" / f"{args.framework}-{name}").resolve()
    out.mkdir(parents=True, exist_ok=True)
    space = space_with_imgsz(args.framework, args.imgsz, out / "space.yaml")

    results = {}
    for seed in range(args.seeds):
        experiment, done = out / f"seed{seed}", out / f"seed{seed}.json"
        if done.is_file():
            result = json.loads(done.read_text())
        else:
            shutil.rmtree(experiment, ignore_errors=True)  # a run cut short: this bench's own scratch
            command = [
                sys.executable,
                "runners/tune.py",
                "--framework",
                args.framework,
                "--num-samples",
                "1",
                "--weights",
                "none",  # from scratch, as measured (docs/PRETRAINED.md)
                "--confirm-top",
                "0",
                "--max-epochs",
                str(args.max_epochs),
                "--seed",
                str(seed),
                "--cpus-per-trial",
                str(os.cpu_count() or 1),  # one trial at a time: every core
                "--storage",
                str(out),
                "--name",
                experiment.name,
                "--cache-dir",
                str(args.cache_dir),
                *(["--space", str(space)] if space else []),
                *(["--data", str(args.data)] if args.data else []),
            ]
            log = out / f"seed{seed}.log"
            with open(log, "w") as handle:
                proc = subprocess.run(
                    command,
                    cwd=REPO_ROOT,
                    stdout=handle,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, "PYTHONUNBUFFERED": "1"},
                )
            result = seed_result(experiment)
            if proc.returncode != 0 or result is None:
                said = (log.read_text(errors="replace").strip().splitlines() or ["no output"])[-1]
                print(
                    f"seed {seed}: runners/tune.py failed (exit {proc.returncode}): {said} (whole log: {log})",
                    file=sys.stderr,
                )
                return proc.returncode or 1
            done.write_text(json.dumps(result, indent=1))
        results[seed] = result
        print(
            f"seed {seed}: score {result['score']:.1f}, best {METRIC} {result['best']:.1f} "
            f"(epoch {result['best_epoch']}/{result['epochs']}), last {result['last']:.1f}",
            flush=True,
        )

    scores = [r["score"] for r in results.values()]
    figures = noise_figures(scores, args.confirm_seeds)
    best = noise_figures([r["best"] for r in results.values()], args.confirm_seeds)
    print(
        f"{args.framework} on {name}, default configuration, {args.seeds} seeds x {args.max_epochs} epochs: "
        f"score {figures['mean']:.1f} ± {figures['sd']:.1f} (best {METRIC} {best['mean']:.1f} ± {best['sd']:.1f})"
    )
    print(
        f"noise: two single-seed trials differ by up to {figures['noise_single']:.1f} score points 19 times in 20; "
        f"two configurations confirmed with {args.confirm_seeds} seeds each, "
        f"by up to {figures['noise_confirmed']:.1f}"
    )
    summary = {
        "framework": args.framework,
        "data": name,
        "max_epochs": args.max_epochs,
        "seeds": results,
        "score": figures,
        "best": best,
    }
    (out / "spread.json").write_text(json.dumps(summary, indent=1))
    return 0


def space_with_imgsz(framework: str, imgsz: int | None, path: Path) -> Path | None:
    """segtune's default CPU space of `framework` with `imgsz` set (written to `path`); None: no change."""
    if imgsz is None:
        return None
    import yaml

    from segtune.search_spaces.space import default_space_path

    raw = yaml.safe_load(default_space_path(framework, cpu_only=True).read_text())
    raw["params"]["imgsz"] = imgsz
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


if __name__ == "__main__":
    sys.exit(main())
