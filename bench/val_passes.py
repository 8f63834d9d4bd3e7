"""Passes over the val set per YOLO epoch: segtune's COCO pass alone, or with Ultralytics' own validation.

    python bench/val_passes.py [--epochs 4] [--rounds 3]

Trains the YOLO adapter in this process (no Ray) on the demo data, as a trial does (COCO predictions
and evaluation plus a checkpoint after every epoch), with --metric segm/AP (one pass: Ultralytics'
validation is off) and --metric yolo/val/seg_loss (Ultralytics validates too), alternating the two
`--rounds` times so that a busy machine slows both alike. The first epoch of each run (start-up) is
left out. Prints median epoch times, the time Ultralytics' validation took inside the two-pass
epochs, and their ratio, in CPU seconds of this process (one torch thread: robust to other load on
a shared machine) and in wall seconds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from segtune.trainers.yolo.adapter import YoloAdapter

REPO_ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("YOLO_OFFLINE", "1")

METRICS = ("segm/AP", "yolo/val/seg_loss")


class TimedYolo(YoloAdapter):
    """The YOLO adapter with Ultralytics' validator timed (its on_val_start / on_val_end callbacks)."""

    def _build_model(self, resume_checkpoint):
        model = super()._build_model(resume_checkpoint)
        self.val_seconds: list[float] = []
        seconds = self.val_seconds
        model.add_callback("on_val_start", lambda validator: seconds.append(-time.process_time()))
        model.add_callback("on_val_end", lambda validator: seconds.append(seconds.pop() + time.process_time()))
        return model


def run(dataset, metric: str, epochs: int, out: Path) -> list[dict[str, float]]:
    """One trial of `epochs` epochs; per epoch: wall time, Ultralytics' validation, segtune's pass."""
    from segtune.cocodata.evaluator import CocoEvaluator
    from segtune.search_spaces.space import default_space_path, load_space
    from segtune.trainers.base import TrialContext

    params = {**load_space(default_space_path("yolo", cpu_only=True)).fixed, "optimizer": "SGD", "lr0": 0.01, "seed": 0}
    params = {k: v for k, v in params.items() if k in YoloAdapter.param_names()}
    adapter = TimedYolo(
        params, TrialContext(dataset=dataset, output_dir=out, max_epochs=epochs, device="cpu", metric=metric)
    )
    evaluator = CocoEvaluator(dataset.val_json)
    rows: list[dict[str, float]] = []
    last = [time.process_time(), time.perf_counter()]

    def on_epoch_end(epoch: int, native: dict) -> None:
        started = time.process_time()
        evaluator.evaluate(adapter.predict_val())
        ours = time.process_time() - started
        (out / f"ckpt{epoch}").mkdir()
        adapter.save_checkpoint(out / f"ckpt{epoch}")
        cpu, wall = time.process_time(), time.perf_counter()
        rows.append(
            {
                "epoch": cpu - last[0],
                "wall": wall - last[1],
                "ultralytics_val": sum(adapter.val_seconds),
                "coco_pass": ours,
            }
        )
        adapter.val_seconds.clear()
        last[:] = [cpu, wall]

    adapter.train(on_epoch_end)
    return rows[1:]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    import logging

    import torch
    from ultralytics.utils import LOGGER

    from segtune.cocodata.prepare import prepare_dataset

    LOGGER.setLevel(logging.WARNING)  # Ultralytics' per-epoch tables are noise here
    torch.set_num_threads(1)  # as a trial with one CPU
    with tempfile.TemporaryDirectory() as tmp:
        dataset = prepare_dataset(
            None, cache_dir=Path(tmp) / "cache", layouts=YoloAdapter.data_layouts(), log=lambda _: None
        )
        rows: dict[str, list[dict[str, float]]] = {m: [] for m in METRICS}
        for round_ in range(args.rounds):
            for metric in METRICS:
                out = Path(tmp) / f"{metric.replace('/', '_')}-{round_}"
                rows[metric] += run(dataset, metric, args.epochs, out)
    print(
        f"demo data: {dataset.num_train_images} train / {dataset.num_val_images} val images; "
        f"{args.rounds} rounds x {args.epochs - 1} steady epochs per metric"
    )
    keys = ("epoch", "wall", "ultralytics_val", "coco_pass")
    med = {m: {k: statistics.median(r[k] for r in rows[m]) for k in keys} for m in METRICS}
    for metric in METRICS:
        m = med[metric]
        print(
            f"--metric {metric:<18} epoch {m['epoch']:.2f} CPU s ({m['wall']:.2f} s wall); Ultralytics "
            f"validation {m['ultralytics_val']:.2f} CPU s; segtune COCO pass {m['coco_pass']:.2f} CPU s"
        )
    one, two = med["segm/AP"], med["yolo/val/seg_loss"]
    print(
        f"epoch, one val pass / two: {one['epoch'] / two['epoch']:.2f} in CPU time "
        f"({one['wall'] / two['wall']:.2f} wall); Ultralytics' validation was "
        f"{two['ultralytics_val'] / two['epoch']:.1%} of a two-pass epoch's CPU time"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
