"""Ultralytics' own tuners on segtune's prepared data, every epoch scored by segtune's evaluator.

    python bench/ultralytics_tuners.py --method genetic|ray --out DIR --epochs E --iterations I \\
        --seed S --fixed '{"imgsz": 128, ...}' [--data DIR] [--cache-dir DIR] [--concurrency 2]

A helper of `bench/search_efficiency.py` (one search per process: Ultralytics' Ray run shuts Ray
down, and its genetic tuner starts a subprocess per iteration).

- genetic: `model.tune(iterations=I, epochs=E, ...)`, i.e. Ultralytics' `Tuner` with its default
  search space (26 keys: lr0, lrf, momentum, weight_decay, warmup_*, box, cls, cls_pw, dfl, hsv_*,
  degrees, translate, scale, shear, perspective, flipud, fliplr, bgr, mosaic, mixup, cutmix,
  copy_paste, close_mosaic). Called as `model.tune` calls it, with `cleanup=False` so that the
  checkpoints of iterations that were not the best survive until they are scored.
- ray: `model.tune(use_ray=True, iterations=I, epochs=E, ...)`: Ray Tune with Ultralytics' default
  space (the same 26 keys), its default searcher (Optuna TPE, multivariate, constant liar) and its
  ASHA (grace period 10 epochs, reduction factor 3), `concurrency` trials at a time.

Both train with `save_period=1`, so every epoch leaves a checkpoint (its EMA weights, what
Ultralytics validates). After the tuner has finished, each checkpoint goes through segtune's own
YOLO prediction path (`YoloAdapter.predict_val`: conf 0.001, full-resolution masks, original
category ids) and `CocoEvaluator`, exactly as a segtune trial scores its epochs; the checkpoints are
then deleted. OUT/ultralytics.json holds every epoch's scores (with the checkpoint's write time, to
order epochs of concurrent trials), the winner's hyperparameters as the tuner chose them, and times.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]

RESULT_FILE = "ultralytics.json"
TASK_METRIC = "metrics/mAP50-95(M)"  # what Ultralytics' Ray tuner optimises for segmentation
_EPOCH_FILE = re.compile(r"^epoch(\d+)\.pt$")


def prepare(data: Path | None, cache_dir: Path):
    """segtune's prepared dataset (validated, COCO JSONs, Ultralytics layout), as every segtune trial gets it."""
    from segtune.cocodata.prepare import prepare_dataset
    from segtune.trainers.registry import dataset_readers
    from segtune.trainers.yolo.layout import ULTRALYTICS_LAYOUT

    return prepare_dataset(
        data, cache_dir=cache_dir, layouts=(ULTRALYTICS_LAYOUT,), readers=dataset_readers(), log=lambda msg: None
    )


def train_args(dataset, epochs: int, seed: int, fixed: dict[str, Any], project: Path) -> dict[str, Any]:
    """The fixed arguments every method shares, offline on the CPU, one checkpoint per epoch."""
    from segtune.trainers.yolo.dataset_yaml import LAYOUT

    return {
        **fixed,
        "data": str(dataset.layout(LAYOUT)),
        "epochs": epochs,
        "seed": seed,
        "device": "cpu",
        "workers": 0,
        "amp": False,
        "plots": False,
        "save_period": 1,
        "project": str(project),
        "verbose": False,
    }


def run_genetic(model_name: str, args: dict[str, Any], iterations: int) -> dict[str, Any]:
    from ultralytics import YOLO
    from ultralytics.engine.tuner import Tuner

    model = YOLO(model_name, task="segment")
    args = {**args, "name": "tune"}
    args.setdefault("optimizer", "AdamW")  # model.tune's own default
    tuner = Tuner(args={**model.overrides, **args, "mode": "train"}, model=model.model, _callbacks=model.callbacks)
    tuner(iterations=iterations, cleanup=False)
    results = [json.loads(line) for line in tuner.tune_file.read_text().splitlines() if line.strip()]
    best = max(results, key=lambda r: r.get("fitness") or 0.0)  # as Tuner._best_result_index, all trained
    return {
        "winner": best["hyperparameters"],
        "winner_fitness": best.get("fitness"),
        "iterations": [
            {
                "hyperparameters": r["hyperparameters"],
                "fitness": r.get("fitness"),
                "dirs": list((r.get("save_dirs") or {}).values()),
            }
            for r in results
        ],
    }


def run_ray(model_name: str, args: dict[str, Any], iterations: int, concurrency: int) -> dict[str, Any]:
    import ray
    from ultralytics import YOLO
    from ultralytics.utils import NUM_THREADS

    # Trials ask Ray for NUM_THREADS CPUs each: a Ray of concurrency x that runs `concurrency` at once.
    # A fresh local Ray, never one somebody else started on this machine.
    ray.init(
        address="local",
        num_cpus=concurrency * NUM_THREADS,
        include_dashboard=False,
        log_to_driver=False,
        logging_level="WARNING",
    )
    model = YOLO(model_name, task="segment")
    grid = model.tune(use_ray=True, iterations=iterations, name="tune", **args)
    trials = []
    for result in grid:
        config = {k: v for k, v in (result.config or {}).items() if k != "data"}
        trials.append(
            {
                "hyperparameters": config,
                "fitness": (result.metrics or {}).get(TASK_METRIC),
                "error": str(result.error) if result.error else None,
            }
        )
    scored = [t for t in trials if t["fitness"] is not None]
    if not scored:
        raise RuntimeError(f"no Ultralytics Ray Tune trial reported {TASK_METRIC}: {trials}")
    best = max(scored, key=lambda t: t["fitness"])
    return {"winner": best["hyperparameters"], "winner_fitness": best["fitness"], "iterations": trials}


def epoch_checkpoints(project: Path) -> list[tuple[Path, int]]:
    """(checkpoint, 1-based epoch) of every training run under `project`, in the order they were
    written. project/tune is the tuner's own folder (its copy of the best run's weights, Ray's state)."""
    found = []
    for path in project.rglob("weights/epoch*.pt"):
        match = _EPOCH_FILE.match(path.name)
        if match and path.relative_to(project).parts[0] != "tune":
            found.append((path, int(match.group(1)) + 1))  # Ultralytics names them by its 0-based epoch
    return sorted(found, key=lambda item: (item[0].stat().st_mtime, str(item[0])))


def score_checkpoints(dataset, project: Path, imgsz: int) -> list[dict[str, Any]]:
    """Every epoch checkpoint through segtune's YOLO prediction path and COCO evaluator."""
    from ultralytics import YOLO

    from segtune.cocodata.evaluator import CocoEvaluator
    from segtune.trainers.base import TrialContext
    from segtune.trainers.yolo.adapter import YoloAdapter

    evaluator = CocoEvaluator(dataset.val_json)
    context = TrialContext(
        dataset=dataset, output_dir=project, max_epochs=1, device="cpu", max_detections=evaluator.max_dets
    )
    adapter = YoloAdapter({"imgsz": imgsz}, context)
    records = []
    for path, epoch in epoch_checkpoints(project):
        model = YOLO(str(path), task="segment").model
        # predict_val reads the model and its image size from the live trainer: this one stands in for it.
        adapter._trainer = SimpleNamespace(ema=None, model=model, args=SimpleNamespace(imgsz=imgsz, device="cpu"))
        metrics = evaluator.evaluate(adapter.predict_val())
        run = path.parent.parent
        records.append(
            {
                "run": str(run.relative_to(project)),
                "epoch": epoch,
                "time": path.stat().st_mtime,
                "segm/AP": metrics["segm/AP"],
                "bbox/AP": metrics["bbox/AP"],
            }
        )
    return records


def delete_weights(project: Path) -> None:
    """Scored: the checkpoints (up to ~30 MB each, one per epoch) are no longer needed."""
    for path in project.rglob("weights/*.pt"):
        path.unlink()


def _plain(value: Any) -> Any:
    """numpy scalars (Ray's sampled values) as Python numbers."""
    return value.item() if hasattr(value, "item") else str(value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", choices=("genetic", "ray"), required=True)
    parser.add_argument("--out", type=Path, required=True, help="a new directory for this one search")
    parser.add_argument("--data", type=Path, default=None, help="COCO dataset dir (default: the demo set)")
    parser.add_argument("--cache-dir", type=Path, default=Path("~/.cache/segtune"))
    parser.add_argument("--model", default="yolo11n-seg.yaml")
    parser.add_argument("--epochs", type=int, required=True, help="epochs per iteration")
    parser.add_argument("--iterations", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0, help="training seed (Ultralytics' mutations are unseeded)")
    parser.add_argument("--fixed", default="{}", help="JSON of the fixed training arguments")
    parser.add_argument("--concurrency", type=int, default=2, help="Ray trials at a time (method ray)")
    args = parser.parse_args(argv)

    os.environ.setdefault("YOLO_OFFLINE", "1")  # before Ultralytics is imported; Ray's workers inherit it
    out = args.out.expanduser().resolve()
    project = out / "ultralytics"
    project.mkdir(parents=True, exist_ok=False)
    fixed = json.loads(args.fixed)
    dataset = prepare(args.data, args.cache_dir.expanduser().resolve())
    training = train_args(dataset, args.epochs, args.seed, fixed, project)
    started = time.time()
    if args.method == "genetic":
        outcome = run_genetic(args.model, training, args.iterations)
    else:
        outcome = run_ray(args.model, training, args.iterations, args.concurrency)
    search_s = time.time() - started
    records = score_checkpoints(dataset, project, int(fixed.get("imgsz", 640)))
    delete_weights(project)
    result = {
        "method": args.method,
        "started": started,
        "search_s": search_s,
        "scoring_s": time.time() - started - search_s,
        "records": records,
        **outcome,
    }
    (out / RESULT_FILE).write_text(json.dumps(result, indent=1, default=_plain))
    print(
        f"ultralytics {args.method}: {len(records)} epochs in {search_s:.0f}s, winner fitness "
        f"{outcome['winner_fitness']}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
