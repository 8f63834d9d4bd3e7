"""How fast fixed YOLO configurations start to train on the demo set: AP per epoch, no search.

    python bench/config_probe.py --epochs 20 \
        '{"optimizer": "SGD", "lr0": 0.01}' '{"optimizer": "AdamW", "lr0": 0.005, "batch": 8, "nbs": 8}'

Each JSON is a set of Ultralytics arguments on top of the CPU space's fixed values (imgsz 128,
batch 16, nbs 16, close_mosaic 5, seed 0) and Ultralytics' defaults. Each configuration is trained
through segtune's YOLO adapter and scored by segtune's evaluator after every epoch, like a trial but
without Ray, two at a time. Printed per configuration: the first epoch with segm/AP above 0.5, the
AP at the end, and the AP of every epoch. What it is for: choosing search-space ranges and fixed
values that train within the CPU budget (docs/BENCHMARKS.md, "Trials that never leave AP 0").
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
CPU_FIXED = {"imgsz": 128, "batch": 16, "nbs": 16, "close_mosaic": 5, "cache": "ram", "seed": 0}


def train_one(params: dict, epochs: int, out: Path, cache_dir: Path) -> list[float]:
    """AP per epoch of one configuration (runs in its own process: one torch thread each)."""
    import torch

    from segtune.cocodata.evaluator import CocoEvaluator
    from segtune.cocodata.prepare import prepare_dataset
    from segtune.trainers.base import TrialContext
    from segtune.trainers.yolo.adapter import YoloAdapter

    torch.set_num_threads(1)
    dataset = prepare_dataset(cache_dir=cache_dir, layouts=YoloAdapter.data_layouts(), log=lambda _: None)
    context = TrialContext(
        dataset=dataset, output_dir=out, max_epochs=epochs, device="cpu", model=YoloAdapter.default_model
    )
    adapter = YoloAdapter({**CPU_FIXED, **params}, context)
    evaluator = CocoEvaluator(dataset.val_json)
    aps: list[float] = []
    adapter.train(lambda epoch, native: aps.append(evaluator.evaluate(adapter.predict_val())["segm/AP"]))
    return aps[:epochs]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("configs", nargs="*", help="JSON objects of Ultralytics arguments")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--cache-dir", type=Path, default=Path("~/.cache/segtune").expanduser())
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: train this JSON and print its APs
    args = parser.parse_args()
    if args.one is not None:
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(train_one(json.loads(args.one), args.epochs, Path(tmp), args.cache_dir)))
        return 0

    def run(config: str) -> tuple[str, list[float]]:
        proc = subprocess.run(
            [
                sys.executable,
                __file__,
                "--epochs",
                str(args.epochs),
                "--cache-dir",
                str(args.cache_dir),
                "--one",
                config,
            ],
            capture_output=True,
            text=True,
            env={**os.environ, "YOLO_OFFLINE": "1"},
        )
        lines = proc.stdout.strip().splitlines()
        if proc.returncode != 0 or not lines:
            print(f"{config}\n  failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
            return config, []
        return config, json.loads(lines[-1])

    with ThreadPoolExecutor(2) as pool:
        for config, aps in pool.map(run, args.configs):
            if not aps:
                continue
            start = next((i for i, ap in enumerate(aps, 1) if ap > 0.5), None)
            print(
                f"{config}\n  first AP > 0.5 at epoch {start or '-'}; AP at the end "
                f"{aps[-1]:.1f}; per epoch: {' '.join(f'{a:.0f}' for a in aps)}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
