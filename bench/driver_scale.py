"""How the search driver and the analysis scripts scale with the number of trials.

    python bench/driver_scale.py [--trials 1000] [--max-epochs 9] [--concurrent 8] [--keep DIR]

Runs a search of `--trials` trials through segtune's own Tuner (`runners/search/tuner.build_tuner` with
`make_trainable` swapped: the same Optuna TPE searcher on the experiment's study over the YOLO CPU
search space, ASHA, end-reason and progress callbacks, checkpoint every epoch, per-trial logging,
experiment snapshots after every checkpoint as `runners/tune.py` sets them, segtune.json)
with a trivial trainable in place of a real trial: it reports what a real trial reports (the 12 COCO
metrics, native metrics, a small checkpoint) with no training, so all the time measured is the
driver's (Ray Tune, the searcher, the scheduler, logging, checkpoint bookkeeping). Then it times
`analysis/rank.py` and `analysis/report.py` on that experiment, run as a user runs them.
Prints driver wall time and CPU time per trial, and the scripts' wall times.
"""

from __future__ import annotations

import argparse
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import segtune.runners.launch  # noqa: F401  (sets Ray's environment as a real search does)

REPO_ROOT = Path(__file__).resolve().parents[1]


def trivial_trial(config: dict, settings) -> None:
    """Reports like runners/trial/loop.py:run_trial, epoch after epoch, without training anything."""
    from ray import tune

    from segtune.cocodata.evaluator import METRIC_KEYS

    # A smooth, seeded response to the searched values, so that TPE and ASHA have something to rank.
    from segtune.core.score import RunningScore

    quality = math.exp(-((math.log10(config["lr0"]) + 2.3) ** 2)) * (1.2 - abs(config["momentum"] - 0.9) * 4)
    metric, mode = settings.objective.metric, settings.objective.mode
    running = RunningScore(mode)
    for epoch in range(1, settings.budget.max_epochs + 1):
        ap = 50.0 * quality * (1 - math.exp(-epoch / 3))
        result = {key: ap * (0.8 if key.startswith("bbox") else 1.0) for key in METRIC_KEYS}
        result.update(
            {
                "yolo/train/box_loss": 2.0 - ap / 50,
                "yolo/train/seg_loss": 3.0 - ap / 40,
                "yolo/lr/pg0": config["lr0"],
                "epoch": epoch,
                "segtune/eval_time_s": 0.0,
                "segtune/num_predictions": 100,
                "segtune/trial_time_s": 0.0,
                "segtune/node_id": "bench",
                "segtune/diverged": 0,
            }
        )
        result.update(running.add(result[metric]))
        with tempfile.TemporaryDirectory(prefix="segtune-ckpt-") as tmp:
            (Path(tmp) / "last.pt").write_bytes(b"\0" * 1024)
            tune.report(result, checkpoint=tune.Checkpoint.from_directory(tmp))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=1000)
    parser.add_argument("--max-epochs", type=int, default=9)
    parser.add_argument("--concurrent", type=int, default=8, help="trials at a time (CPUs are shared out)")
    parser.add_argument("--keep", type=Path, default=None, help="keep the experiment under this storage folder")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        storage = (args.keep or Path(tmp)).resolve()
        experiment = storage / "driver-scale"
        if experiment.exists():
            print(f"{experiment} exists; pass another --keep folder", file=sys.stderr)
            return 2
        driver_wall, driver_cpu = run_search(args, storage, Path(tmp) / "cache")
        per_wall, per_cpu = driver_wall / args.trials * 1000, driver_cpu / args.trials * 1000
        print(
            f"driver: {args.trials} trials in {driver_wall:.1f} s wall, {driver_cpu:.1f} s CPU: "
            f"{per_wall:.0f} ms wall and {per_cpu:.0f} ms CPU per trial ({args.concurrent} at a time)"
        )
        epochs = sum(1 for p in experiment.glob("trial_*/result.json") for _ in p.open())
        print(f"epochs reported: {epochs} ({epochs / args.trials:.2f} per trial after ASHA)")
        for script in ("rank.py", "report.py"):
            out = Path(tmp) / script.removesuffix(".py")
            started = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, f"analysis/{script}", str(experiment), "--out", str(out)],
                cwd=REPO_ROOT,
                capture_output=True,
                text=True,
            )
            seconds = time.perf_counter() - started
            state = "ok" if proc.returncode == 0 else f"exit {proc.returncode}: {proc.stderr.strip()[-300:]}"
            print(f"analysis/{script} on {args.trials} trials: {seconds:.1f} s ({state})")
    return 0


def run_search(args, storage: Path, cache_dir: Path) -> tuple[float, float]:
    from unittest import mock

    from ray import tune

    from segtune.cocodata.prepare import prepare_dataset
    from segtune.core.record import RunSettings
    from segtune.core.sections import Budget, FrameworkEntry, Objective, Resources, Schedule
    from segtune.runners.cluster.connect import init_ray
    from segtune.runners.search import tuner as project_tuner
    from segtune.search_spaces.space import default_space_path, load_space
    from segtune.trainers.yolo.adapter import YoloAdapter

    dataset = prepare_dataset(None, cache_dir=cache_dir, layouts=YoloAdapter.data_layouts(), log=lambda _: None)
    space = load_space(default_space_path("yolo", cpu_only=True)).with_fixed({"seed": 0})
    init_ray(None)
    import ray

    cpus = ray.cluster_resources().get("CPU", 1)
    experiment_dir = storage / "driver-scale"
    settings = RunSettings(
        data=dataset,
        frameworks=(FrameworkEntry("yolo", models=(YoloAdapter.default_model,), space=space.to_dict()),),
        space=space.to_dict(),
        objective=Objective("segm/AP", "max"),
        budget=Budget(max_epochs=args.max_epochs, num_samples=args.trials),
        schedule=Schedule(grace_period=1, reduction_factor=3),
        resources=Resources(
            gpus_per_trial=0,
            cpus_per_trial=cpus / args.concurrent,
            workers=0,
            max_detections=100,
            max_concurrent=args.concurrent,
        ),
        seed=0,
        experiment_dir=str(experiment_dir),
    )

    def trivial_trainable(settings: RunSettings):
        return tune.with_resources(
            tune.with_parameters(trivial_trial, settings=settings), {"cpu": settings.resources.cpus_per_trial, "gpu": 0}
        )

    experiment_dir.mkdir(parents=True)
    settings.save(experiment_dir)
    # The project's Tuner, searcher, scheduler and callbacks, with the trivial trainable in place of run_trial.
    with mock.patch.object(project_tuner, "make_trainable", trivial_trainable):
        tuner = project_tuner.build_tuner(settings, space, experiment_dir, output="quiet")
    started, cpu_before = time.perf_counter(), _cpu_seconds()
    tuner.fit()
    return time.perf_counter() - started, _cpu_seconds() - cpu_before


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


if __name__ == "__main__":
    sys.exit(main())
