"""COCO evaluation speed on a dense case: segtune's CocoEvaluator against pycocotools, one run.

    python bench/eval_speed.py              # full: 234 images, ~31k GT, ~32k predictions (~2 min)
    python bench/eval_speed.py --quick      # 30 images (< 1 min)
    python bench/eval_speed.py --write DIR  # keep the case as DIR/gt.json and DIR/preds.json
    python bench/eval_speed.py --single-class  # all GT in one class, as dense one-class scenes

Evaluation runs after every epoch of every trial while the trial's GPU waits, so its cost is
paid hundreds of times per search. The case is built like the dense set of issue 10: 640x480
images with 40-225 polygon objects each (one dominant class), predictions jittered from the GT
with misses, duplicates, wrong classes and false positives (up to ~260 per image), RLE masks as
`instances_to_coco` makes them. Timed, end to end from COCO dicts:
- the reference: pycocotools (COCO index, loadRes, COCOeval evaluate + accumulate for segm and
  bbox at maxDets [1, 10, N], each task given only its own geometry, as CocoEvaluator does);
- `CocoEvaluator(gt)` (GT normalisation, once per trial) and `.evaluate(preds)` (every epoch);
- `python analysis/evaluate.py GT PRED` as a user runs it: interpreter start, imports, JSON.
Absolute times follow the machine's load; the ratios are measured in one run, on wall-clock and
on CPU time (steadier on a shared machine). Also prints what
`instances_to_coco` costs per image (masks -> RLE at full resolution), next to pycocotools'
`encode` of the same stack. Exits 1 when any AP differs from the reference by more than 1e-4.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from segtune.cocodata.evaluator import METRIC_KEYS, METRIC_NAMES, CocoEvaluator
from segtune.cocodata.results import instances_to_coco

REPO_ROOT = Path(__file__).resolve().parents[1]

HEIGHT, WIDTH = 480, 640
CATEGORY_IDS = (1, 2, 3)
CATEGORY_WEIGHTS = (0.85, 0.10, 0.05)  # one dominant class, as in dense single-purpose scenes
TOLERANCE = 1e-4


# ---------------------------------------------------------------- the dense case


def _polygon(rng: np.random.Generator, cx: float, cy: float, radius: float) -> np.ndarray:
    """A star-convex polygon of 6-12 vertices around (cx, cy), clipped to the image."""
    n = int(rng.integers(6, 13))
    angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    radii = radius * rng.uniform(0.6, 1.0, n)
    points = np.column_stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)])
    return np.clip(points, 0, [WIDTH - 1, HEIGHT - 1])


def _radius(rng: np.random.Generator) -> float:
    # Mostly small and medium objects, a few large ones: all three COCO size ranges get GT.
    return float(rng.choice([rng.uniform(3, 16), rng.uniform(16, 50), rng.uniform(50, 110)], p=[0.45, 0.45, 0.10]))


def _rles(polygons: list[np.ndarray]) -> list[dict]:
    return mask_utils.frPyObjects([p.ravel().tolist() for p in polygons], HEIGHT, WIDTH)


def _json_rle(rle: dict) -> dict:
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def make_dense_case(
    n_images: int, seed: int = 0, weights: tuple[float, ...] = CATEGORY_WEIGHTS
) -> tuple[dict, list[dict]]:
    """(GT dict with polygon annotations, COCO result dicts with RLE masks and boxes); GT
    categories drawn with `weights` (pycocotools' cost grows with instances per category)."""
    rng = np.random.default_rng(seed)
    images, annotations, predictions = [], [], []
    for image_id in range(1, n_images + 1):
        images.append({"id": image_id, "file_name": f"{image_id:06d}.jpg", "height": HEIGHT, "width": WIDTH})
        n = int(rng.integers(40, 226))
        centres = rng.uniform([0, 0], [WIDTH, HEIGHT], size=(n, 2))
        gt_polys = [_polygon(rng, cx, cy, _radius(rng)) for cx, cy in centres]
        categories = rng.choice(CATEGORY_IDS, size=n, p=weights)
        for poly, rle, cat in zip(gt_polys, _rles(gt_polys), categories):
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": int(cat),
                    "segmentation": [poly.ravel().round(2).tolist()],
                    "iscrowd": 0,
                    "area": float(mask_utils.area(rle)),
                    "bbox": [float(v) for v in mask_utils.toBbox(rle)],
                }
            )
        predictions += _predictions(rng, image_id, gt_polys, categories)
    gt = {
        "images": images,
        "annotations": annotations,
        "categories": [{"id": c, "name": f"class{c}"} for c in CATEGORY_IDS],
    }
    return gt, predictions


def _predictions(
    rng: np.random.Generator, image_id: int, gt_polys: list[np.ndarray], categories: np.ndarray
) -> list[dict]:
    """Jittered copies of the GT (8% missed, 5% duplicated, 3% wrong class) plus 8% FPs."""
    polys, cats, scores = [], [], []
    for poly, cat in zip(gt_polys, categories):
        if rng.random() < 0.08:
            continue
        for _ in range(2 if rng.random() < 0.05 else 1):
            scale = rng.uniform(0.92, 1.08)
            centre = poly.mean(axis=0)
            jittered = (poly - centre) * scale + centre + rng.normal(0, 1.0, size=2)
            jittered += rng.normal(0, 0.5, size=poly.shape)
            polys.append(np.clip(jittered, 0, [WIDTH - 1, HEIGHT - 1]))
            wrong = rng.random() < 0.03
            cats.append(int(rng.choice(CATEGORY_IDS)) if wrong else int(cat))
            scores.append(float(rng.beta(5, 2)))
    for _ in range(int(0.08 * len(gt_polys))):
        centre = rng.uniform([0, 0], [WIDTH, HEIGHT])
        polys.append(_polygon(rng, centre[0], centre[1], _radius(rng)))
        cats.append(int(rng.choice(CATEGORY_IDS)))
        scores.append(float(rng.beta(2, 5)))
    out = []
    for rle, cat, score in zip(_rles(polys), cats, scores):
        box = mask_utils.toBbox(rle) + rng.normal(0, 1.0, size=4)
        box[2:] = np.maximum(box[2:], 1.0)
        out.append(
            {
                "image_id": image_id,
                "category_id": cat,
                "score": score,
                "bbox": [float(v) for v in box],
                "segmentation": _json_rle(rle),
            }
        )
    return out


# ---------------------------------------------------------------- the evaluators


def pycocotools_metrics(gt: dict, preds: list[dict], max_dets: int) -> dict[str, float]:
    """The reference: plain pycocotools, the AP figures CocoEvaluator reports (precision at the
    last maxDets, as COCOeval._summarize averages it, x100). Copies keep the inputs intact."""
    out = {}
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = {**gt, "annotations": [dict(a) for a in gt["annotations"]]}
        coco_gt.createIndex()
        for task in ("segm", "bbox"):
            drop = "bbox" if task == "segm" else "segmentation"
            anns = [{k: v for k, v in p.items() if k != drop} for p in preds]
            coco_eval = COCOeval(coco_gt, coco_gt.loadRes(anns), task)
            coco_eval.params.maxDets = [1, 10, max_dets]
            coco_eval.evaluate()
            coco_eval.accumulate()
            precision = coco_eval.eval["precision"][..., -1]
            for name in METRIC_NAMES:
                p = precision[..., {"APs": 1, "APm": 2, "APl": 3}.get(name, 0)]
                if name in ("AP50", "AP75"):
                    p = p[[0 if name == "AP50" else 5]]  # iouThrs 0.50 and 0.75
                valid = p[p > -1]
                out[f"{task}/{name}"] = float(valid.mean()) * 100 if valid.size else -1.0
    return out


@dataclass(frozen=True)
class Cost:
    """Wall-clock and CPU seconds of one step. On a shared, loaded machine short steps lose more
    wall time to other processes than long ones; CPU time shows what the step itself needs."""

    wall: float
    cpu: float

    def __add__(self, other: Cost) -> Cost:
        return Cost(self.wall + other.wall, self.cpu + other.cpu)


def _timed(fn: Callable[..., Any], *args: Any) -> tuple[Any, Cost]:
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn(*args)
    return result, Cost(time.perf_counter() - wall, time.process_time() - cpu)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _max_diff(ours: dict[str, float], ref: dict[str, float]) -> float:
    return max(abs(ours[k] - ref[k]) for k in METRIC_KEYS)


def run_cli(gt_path: Path, pred_path: Path) -> tuple[dict, Cost]:
    """`python analysis/evaluate.py GT PRED` in a fresh interpreter: (its JSON, its cost)."""
    wall, cpu = time.perf_counter(), _children_cpu()
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "analysis/evaluate.py"), str(gt_path), str(pred_path)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(proc.stdout), Cost(time.perf_counter() - wall, _children_cpu() - cpu)


# ---------------------------------------------------------------- prediction side


def _mask_stack(n: int, height: int, width: int) -> np.ndarray:
    """Blobs of realistic extent, not noise: what an RLE encoder pays for follows the runs."""
    rng = np.random.default_rng(0)
    masks = np.zeros((n, height, width), dtype=bool)
    for i in range(n):
        y, x = rng.integers(0, height - 40), rng.integers(0, width - 40)
        h, w = rng.integers(8, min(200, height - y)), rng.integers(8, min(200, width - x))
        masks[i, y : y + h, x : x + w] = True
    return masks


def bench_instances_to_coco(n: int, height: int, width: int, repeats: int) -> tuple[float, float]:
    """Seconds per image: instances_to_coco on n masks (numpy bool), and pycocotools' encode
    of the same stack in the (H, W, N) Fortran layout it needs, for comparison."""
    masks = _mask_stack(n, height, width)
    rng = np.random.default_rng(1)
    boxes = rng.uniform(0, 100, size=(n, 4))
    boxes[:, 2:] += boxes[:, :2]
    scores, classes = rng.random(n), rng.integers(0, len(CATEGORY_IDS), n)
    start = time.perf_counter()
    for _ in range(repeats):
        instances_to_coco(1, boxes, scores, classes, masks, CATEGORY_IDS)
    ours = (time.perf_counter() - start) / repeats
    start = time.perf_counter()
    for _ in range(repeats):
        mask_utils.encode(np.asfortranarray(masks.transpose(1, 2, 0), dtype=np.uint8))
    return ours, (time.perf_counter() - start) / repeats


# ---------------------------------------------------------------- main


def _report_case(gt: dict, preds: list[dict], built: Cost) -> None:
    per_image = np.bincount([a["image_id"] for a in gt["annotations"]])
    preds_per_image = np.bincount([p["image_id"] for p in preds])
    print(
        f"dense case: {len(gt['images'])} images {WIDTH}x{HEIGHT}, "
        f"{len(gt['annotations'])} GT (max {per_image.max()}/image), {len(preds)} predictions "
        f"(max {preds_per_image.max()}/image); built in {built.wall:.1f} s"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="30 images instead of 234")
    parser.add_argument("--images", type=int, help="number of images (overrides --quick)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--single-class",
        action="store_true",
        help="all GT in one class (predictions still name a wrong class at "
        "times): denser per category, pycocotools slower",
    )
    parser.add_argument("--write", type=Path, metavar="DIR", help="keep the case as DIR/gt.json and DIR/preds.json")
    args = parser.parse_args()
    n_images = args.images or (30 if args.quick else 234)

    weights = (1.0, 0.0, 0.0) if args.single_class else CATEGORY_WEIGHTS
    (gt, preds), built = _timed(make_dense_case, n_images, args.seed, weights)
    _report_case(gt, preds, built)
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.write or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "gt.json").write_text(json.dumps(gt))
        (folder / "preds.json").write_text(json.dumps(preds))

        evaluator, t_init = _timed(CocoEvaluator, gt)
        ours, t_eval = _timed(evaluator.evaluate, preds)
        cli, t_cli = run_cli(folder / "gt.json", folder / "preds.json")
        ref, t_ref = _timed(pycocotools_metrics, gt, preds, evaluator.max_dets)

    diff = max(_max_diff(ours, ref), _max_diff(cli, ref))
    print(f"maxDets {evaluator.max_dets}; segm/AP {ref['segm/AP']:.4f}, bbox/AP {ref['bbox/AP']:.4f} (pycocotools)")
    print(f"{'':40s} {'wall s':>8s} {'faster':>7s} {'CPU s':>8s} {'faster':>7s}")
    rows = [
        ("pycocotools COCOeval, both tasks", t_ref),
        ("CocoEvaluator.evaluate(preds)", t_eval),
        ("CocoEvaluator(gt) + evaluate(preds)", t_init + t_eval),
        ("python analysis/evaluate.py GT PRED", t_cli),
    ]
    for label, cost in rows:
        print(
            f"{label:40s} {cost.wall:8.2f} {t_ref.wall / cost.wall:6.1f}x {cost.cpu:8.2f} {t_ref.cpu / cost.cpu:6.1f}x"
        )
    print(
        "(the CLI row is a whole process: interpreter, imports, JSON, GT normalisation; the "
        "reference is pycocotools' evaluation alone)"
    )
    print(f"max |AP difference| over the 12 keys (evaluate() and the CLI): {diff:.1e}")

    for n, height, width in ((100, 480, 640), (300, 768, 1024)):
        ours_s, encode_s = bench_instances_to_coco(n, height, width, repeats=3)
        print(
            f"instances_to_coco, {n} masks {width}x{height}: {ours_s * 1000:6.1f} ms/image "
            f"(pycocotools encode of the stack: {encode_s * 1000:.1f} ms)"
        )
    return 0 if diff <= TOLERANCE else 1


if __name__ == "__main__":
    sys.exit(main())
