"""CocoEvaluator against pycocotools itself, on synthetic GT and on the shared dataset."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from segtune.cocodata import coco_engine
from segtune.cocodata.evaluator import METRIC_KEYS, METRIC_NAMES, CocoEvaluator
from segtune.cocodata.masks import encode_masks
from segtune.cocodata.results import ImageRecord, instances_to_coco, list_images

# pycocotools' own decode() trips a numpy 2 deprecation on every call; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(__file__).resolve().parents[2] / "shared/datasets/microcontroller_seg"
SPLITS = ("train", "val", "test")


# ---------------------------------------------------------------- building data


def _rect(x: float, y: float, w: float, h: float) -> list[float]:
    return [x, y, x + w, y, x + w, y + h, x, y + h]


def _octagon(cx: float, cy: float, r: float) -> list[float]:
    angles = np.arange(8) * np.pi / 4
    return np.column_stack([cx + r * np.cos(angles), cy + r * np.sin(angles)]).ravel().tolist()


def synthetic_gt(seed: int = 0) -> dict:
    """Images with small, medium and large shapes in 3 categories, one crowd region and one
    category without instances; ids start at 1, so plain pycocotools is a valid reference."""
    rng = np.random.default_rng(seed)
    categories = [{"id": cid, "name": f"c{cid}"} for cid in (1, 3, 7, 9)]  # 9 has no instances
    images, annotations = [], []
    for image_id in range(1, 7):
        height, width = 240, 320
        images.append({"id": image_id, "file_name": f"{image_id}.png", "height": height, "width": width})
        for _ in range(int(rng.integers(2, 7))):
            size = float(rng.choice([12.0, 50.0, 130.0]))  # small / medium / large
            x, y = rng.uniform(0, width - size), rng.uniform(0, height - size)
            if rng.random() < 0.5:
                poly = _rect(x, y, size, size * rng.uniform(0.6, 1.0))
            else:
                poly = _octagon(x + size / 2, y + size / 2, size / 2)
            rle = mask_utils.merge(mask_utils.frPyObjects([poly], height, width))
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": int(rng.choice([1, 3, 7])),
                    "segmentation": [poly],
                    "area": float(mask_utils.area(rle)),
                    "bbox": mask_utils.toBbox(rle).tolist(),
                    "iscrowd": 0,
                }
            )
    crowd = np.zeros((240, 320), dtype=np.uint8, order="F")
    crowd[10:60, 200:300] = 1
    crowd_rle = mask_utils.encode(crowd)
    annotations.append(
        {
            "id": len(annotations) + 1,
            "image_id": 1,
            "category_id": 1,
            "iscrowd": 1,
            "segmentation": {"size": [240, 320], "counts": crowd_rle["counts"].decode()},
            "area": float(mask_utils.area(crowd_rle)),
            "bbox": mask_utils.toBbox(crowd_rle).tolist(),
        }
    )
    return {"images": images, "annotations": annotations, "categories": categories}


def _gt_rle(ann: dict, image: dict) -> dict:
    segm = ann["segmentation"]
    if isinstance(segm, list):
        return mask_utils.merge(mask_utils.frPyObjects(segm, image["height"], image["width"]))
    return {"size": segm["size"], "counts": segm["counts"]}


def _json_rle(rle: dict) -> dict:
    counts = rle["counts"]
    counts = counts.decode() if isinstance(counts, bytes) else counts
    return {"size": list(rle["size"]), "counts": counts}


def gt_derived(gt: dict) -> list[dict]:
    """One prediction per GT annotation: score 1, its mask as RLE at the image's size, its bbox."""
    images = {img["id"]: img for img in gt["images"]}
    return [
        {
            "image_id": a["image_id"],
            "category_id": a["category_id"],
            "score": 1.0,
            "bbox": list(a["bbox"]),
            "segmentation": _json_rle(_gt_rle(a, images[a["image_id"]])),
        }
        for a in gt["annotations"]
    ]


def perturbed(gt: dict, seed: int = 1) -> list[dict]:
    """Shifted masks, jittered boxes, random scores, misses, duplicates and false positives."""
    rng = np.random.default_rng(seed)
    images = {img["id"]: img for img in gt["images"]}
    category_ids = [c["id"] for c in gt["categories"]]
    preds = []
    for ann in gt["annotations"]:
        if rng.random() < 0.15:
            continue  # missed
        image = images[ann["image_id"]]
        mask = mask_utils.decode(_gt_rle(ann, image))
        for _ in range(2 if rng.random() < 0.2 else 1):  # sometimes a duplicate
            shifted = np.roll(mask, tuple(rng.integers(-4, 5, size=2)), axis=(0, 1))
            box = np.asarray(ann["bbox"], dtype=float) + rng.normal(0, 3, size=4)
            box[2:] = np.maximum(box[2:], 1)
            preds.append(
                {
                    "image_id": ann["image_id"],
                    "category_id": ann["category_id"],
                    "score": float(rng.random()),
                    "bbox": box.tolist(),
                    "segmentation": _json_rle(mask_utils.encode(np.asfortranarray(shifted))),
                }
            )
    for image in gt["images"]:
        for _ in range(int(rng.integers(1, 4))):  # false positives, some in the empty category
            h, w = image["height"], image["width"]
            size = rng.uniform(8, min(100, h - 1, w - 1))
            x, y = rng.uniform(0, w - size), rng.uniform(0, h - size)
            mask = np.zeros((h, w), dtype=np.uint8, order="F")
            mask[int(y) : int(y + size), int(x) : int(x + size)] = 1
            preds.append(
                {
                    "image_id": image["id"],
                    "category_id": int(rng.choice(category_ids)),
                    "score": float(rng.random()),
                    "bbox": [x, y, size, size],
                    "segmentation": _json_rle(mask_utils.encode(mask)),
                }
            )
    return preds


def pycocotools_reference(gt: dict, preds: list[dict], max_dets: int = 100) -> dict[str, float]:
    """summarize() stats x100 at maxDets [1, 10, max_dets]; each task gets only its own geometry
    (as detectron2 does, so mask AP's size ranges use mask areas). -1 stays -1."""
    out = {}
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
        for task in ("segm", "bbox"):
            drop = "bbox" if task == "segm" else "segmentation"
            anns = [{k: v for k, v in copy.deepcopy(p).items() if k != drop} for p in preds]
            coco_eval = COCOeval(coco_gt, coco_gt.loadRes(anns), task)
            coco_eval.params.maxDets = [1, 10, max_dets]
            coco_eval.evaluate()
            coco_eval.accumulate()
            coco_eval.summarize()
            stats = [float(v) for v in coco_eval.stats[:6]]
            if max_dets != 100:  # summarize() reads AP (only AP) at maxDets=100, whatever is set
                p = coco_eval.eval["precision"][:, :, :, 0, -1]
                stats[0] = float(np.mean(p[p > -1])) if (p > -1).any() else -1.0
            for name, stat in zip(("AP", "AP50", "AP75", "APs", "APm", "APl"), stats):
                out[f"{task}/{name}"] = -1.0 if stat == -1 else stat * 100
    return out


def renumbered(gt: dict) -> dict:
    """The GT with annotation ids 1..N: what plain pycocotools needs to be a valid reference."""
    gt = copy.deepcopy(gt)
    for number, ann in enumerate(gt["annotations"], start=1):
        ann["id"] = number
    return gt


def load_shared(split: str) -> dict:
    path = SHARED / f"annotations/instances_{split}.json"
    if not path.is_file():
        pytest.skip(f"shared dataset not found at {SHARED}")
    return json.loads(path.read_text())


def assert_close(ours: dict[str, float], ref: dict[str, float]) -> None:
    assert set(ours) == set(METRIC_KEYS)
    for key in METRIC_KEYS:
        assert ours[key] == pytest.approx(ref[key], abs=1e-4), key


# ---------------------------------------------------------------- equality with pycocotools


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equals_pycocotools_on_perturbed_synthetic(seed: int) -> None:
    gt = synthetic_gt(seed)
    preds = perturbed(gt, seed + 10)
    evaluator = CocoEvaluator(gt)
    assert evaluator.max_dets == 100
    ours = evaluator.evaluate(preds)
    assert_close(ours, pycocotools_reference(gt, preds))
    assert 0 < ours["segm/AP"] < 100 and 0 < ours["bbox/AP"] < 100
    assert ours["segm/APs"] != -1 and ours["segm/APl"] != -1


@pytest.mark.parametrize("split", SPLITS)
def test_equals_pycocotools_on_shared(split: str) -> None:
    gt = load_shared(split)
    preds = perturbed(gt, 5)
    # Reference on a GT whose annotation ids start at 1, which is what the evaluator fixes.
    assert_close(CocoEvaluator(gt).evaluate(preds), pycocotools_reference(renumbered(gt), preds))


@pytest.mark.parametrize("split", ["train", "val"])
def test_equals_pycocotools_on_demo_set(small_coco: Path, split: str) -> None:
    gt = json.loads((small_coco / f"annotations/instances_{split}.json").read_text())
    preds = perturbed(gt, 7)
    ours = CocoEvaluator(gt).evaluate(preds)
    assert_close(ours, pycocotools_reference(renumbered(gt), preds))
    assert 0 < ours["segm/AP"] < 100


def test_does_not_modify_predictions_or_gt() -> None:
    gt = synthetic_gt()
    preds = perturbed(gt)
    gt_before, preds_before = copy.deepcopy(gt), copy.deepcopy(preds)
    evaluator = CocoEvaluator(gt)
    first = evaluator.evaluate(preds)
    assert preds == preds_before and gt == gt_before
    assert evaluator.evaluate(preds) == first  # repeatable on the same evaluator


# ---------------------------------------------------------------- dense scenes (130-230 objects)


def dense_gt(seed: int = 0) -> dict:
    """3 images with 130, 170 and 230 overlapping objects in 3 categories (60/30/10%), all sizes,
    areas exactly on the small/medium and medium/large borders, and a crowd region per image."""
    rng = np.random.default_rng(seed)
    height, width = 400, 480
    images, annotations = [], []

    def add(image_id: int, category: int, rle: dict, crowd: int, segmentation: object) -> None:
        annotations.append(
            {
                "id": len(annotations) + 1,
                "image_id": image_id,
                "category_id": category,
                "segmentation": segmentation,
                "iscrowd": crowd,
                "area": float(mask_utils.area(rle)),
                "bbox": mask_utils.toBbox(rle).tolist(),
            }
        )

    for image_id, count in zip((1, 2, 3), (130, 170, 230)):
        images.append({"id": image_id, "file_name": f"d{image_id}.png", "height": height, "width": width})
        for k in range(count):
            category = int(rng.choice([1, 2, 5], p=[0.6, 0.3, 0.1]))
            if k < 4:  # 32x32 and 96x96 squares: areas 1024 and 9216 sit on both ranges
                size = 32.0 if k % 2 else 96.0
                x, y = rng.integers(0, width - size), rng.integers(0, height - size)
                poly = _rect(float(x), float(y), size, size)
            else:
                size = float(
                    rng.choice([rng.uniform(4, 30), rng.uniform(30, 90), rng.uniform(90, 160)], p=[0.45, 0.45, 0.1])
                )
                poly = _octagon(rng.uniform(0, width), rng.uniform(0, height), size / 2)
                poly = np.clip(poly, 0, [width - 1, height - 1] * 8).tolist()
            rle = mask_utils.merge(mask_utils.frPyObjects([poly], height, width))
            add(image_id, category, rle, 0, [poly])
        crowd = np.zeros((height, width), dtype=np.uint8, order="F")
        y, x = rng.integers(0, height - 80), rng.integers(0, width - 120)
        crowd[y : y + 80, x : x + 120] = 1
        rle = mask_utils.encode(crowd)
        add(image_id, 1, rle, 1, _json_rle(rle))
    categories = [{"id": c, "name": f"c{c}"} for c in (1, 2, 5)]
    return {"images": images, "annotations": annotations, "categories": categories}


@pytest.fixture(scope="module")
def dense() -> tuple[dict, list[dict]]:
    gt = dense_gt()
    return gt, perturbed(gt, 11)


def _dense_check(gt: dict, preds: list[dict]) -> dict[str, float]:
    evaluator = CocoEvaluator(gt)
    assert evaluator.max_dets == 462  # twice the largest image's 231 annotations (230 objects, a crowd region)
    ours = evaluator.evaluate(preds)
    assert_close(ours, pycocotools_reference(gt, preds, evaluator.max_dets))
    return ours


def test_equals_pycocotools_on_dense_scenes(dense: tuple[dict, list[dict]]) -> None:
    ours = _dense_check(*dense)
    for task in ("segm", "bbox"):
        assert all(0 < ours[f"{task}/{name}"] < 100 for name in METRIC_NAMES), ours


def test_dense_scenes_cut_into_single_components(
    dense: tuple[dict, list[dict]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every IoU >= 0.5 component its own pseudo-image: the cut must not change one figure."""
    monkeypatch.setattr(coco_engine, "BIN_ITEMS", 1)
    _dense_check(*dense)


def test_dense_scenes_with_tied_scores(dense: tuple[dict, list[dict]]) -> None:
    """Equal scores within an image are ordered by position in pycocotools' accumulation."""
    gt, preds = dense
    tied = [{**p, "score": round(p["score"], 1)} for p in preds]
    _dense_check(gt, tied)
    _dense_check(gt, [{**p, "score": 0.5} for p in gt_derived(gt)])


def test_dense_scenes_beyond_max_dets(dense: tuple[dict, list[dict]]) -> None:
    """More detections of one image and category than maxDets: only the best count."""
    gt, preds = dense
    # Exact copies of the GT, scored below most predictions: they only count if kept. Distinct
    # scores, so that the image is cut (equal scores would keep it whole).
    copies = [p for p in gt_derived(gt) if p["image_id"] == 3 and p["category_id"] == 1] * 3
    scores = np.linspace(0.001, 0.3, len(copies))
    crowded = preds + [{**p, "score": float(s)} for p, s in zip(copies, scores)]
    per_group = Counter((p["image_id"], p["category_id"]) for p in crowded)
    assert per_group[3, 1] > CocoEvaluator(gt).max_dets
    _dense_check(gt, crowded)


# ---------------------------------------------------------------- perfect predictions -> 100


def _assert_perfect(metrics: dict[str, float]) -> None:
    for task in ("segm", "bbox"):
        for name in ("AP", "AP50", "AP75"):
            assert metrics[f"{task}/{name}"] == pytest.approx(100.0), f"{task}/{name}"
        for name in ("APs", "APm", "APl"):
            assert metrics[f"{task}/{name}"] in (-1.0, pytest.approx(100.0)), f"{task}/{name}"


@pytest.mark.parametrize("split", SPLITS)
def test_gt_derived_predictions_score_100_on_shared(split: str) -> None:
    gt = load_shared(split)
    _assert_perfect(CocoEvaluator(gt).evaluate(gt_derived(gt)))


def test_gt_quirks_do_not_cost_ap() -> None:
    """Annotation id 0, missing iscrowd/area, a degenerate 4-number polygon listed first."""
    gt = synthetic_gt()
    gt["annotations"] = [a for a in gt["annotations"] if not a["iscrowd"]]
    preds = gt_derived(gt)  # built before the GT is damaged: the real masks
    for ann in gt["annotations"]:
        ann["id"] -= 1  # 0-based, as Roboflow exports
        del ann["iscrowd"], ann["area"]
    gt["annotations"][0]["segmentation"].insert(0, [5.0, 5.0, 60.0, 60.0])
    _assert_perfect(CocoEvaluator(gt).evaluate(preds))


def test_dense_scene_is_not_capped_at_100() -> None:
    height = width = 400
    annotations = []
    for k in range(130):  # 130 disjoint 10x10 squares in one image
        x, y = 20.0 * (k % 20), 20.0 * (k // 20)
        annotations.append(
            {
                "id": k + 1,
                "image_id": 1,
                "category_id": 1,
                "iscrowd": 0,
                "segmentation": [_rect(x, y, 10, 10)],
                "area": 100.0,
                "bbox": [x, y, 10.0, 10.0],
            }
        )
    gt = {
        "images": [{"id": 1, "file_name": "dense.png", "height": height, "width": width}],
        "annotations": annotations,
        "categories": [{"id": 1, "name": "square"}],
    }
    evaluator = CocoEvaluator(gt)
    assert evaluator.max_dets == 260  # headroom: twice the densest image (cocodata.ground_truth.detection_limit)
    metrics = evaluator.evaluate(gt_derived(gt))
    _assert_perfect(metrics)
    assert metrics["segm/APs"] == pytest.approx(100.0) and metrics["segm/APl"] == -1.0


# ---------------------------------------------------------------- edge cases and errors


def test_no_predictions_give_zero_not_nan() -> None:
    metrics = CocoEvaluator(synthetic_gt()).evaluate([])
    assert set(metrics) == set(METRIC_KEYS)
    assert all(v == 0.0 for v in metrics.values())


def test_size_without_gt_is_minus_one() -> None:
    gt = synthetic_gt()
    gt["annotations"] = [a for a in gt["annotations"] if a["area"] > 96**2]  # large only
    metrics = CocoEvaluator(gt).evaluate(gt_derived(gt))
    for task in ("segm", "bbox"):
        assert metrics[f"{task}/APs"] == -1.0 and metrics[f"{task}/APm"] == -1.0
        assert metrics[f"{task}/APl"] == pytest.approx(100.0)
    empty = CocoEvaluator(gt).evaluate([])
    assert empty["segm/AP"] == 0.0 and empty["segm/APs"] == -1.0
    assert not any(math.isnan(v) for v in empty.values())


def test_segm_uses_masks_and_bbox_uses_boxes() -> None:
    gt = synthetic_gt()
    evaluator = CocoEvaluator(gt)
    wrong_boxes = gt_derived(gt)
    for pred in wrong_boxes:
        pred["bbox"] = [0.0, 0.0, 1.0, 1.0]
    metrics = evaluator.evaluate(wrong_boxes)
    assert metrics["segm/AP"] == pytest.approx(100.0) and metrics["bbox/AP"] == 0.0
    empty_masks = gt_derived(gt)
    blank = _json_rle(mask_utils.encode(np.zeros((240, 320), dtype=np.uint8, order="F")))
    for pred in empty_masks:
        pred["segmentation"] = blank
    metrics = evaluator.evaluate(empty_masks)
    assert metrics["segm/AP"] == 0.0 and metrics["bbox/AP"] == pytest.approx(100.0)


def test_polygon_and_uncompressed_rle_predictions() -> None:
    gt = synthetic_gt()
    evaluator = CocoEvaluator(gt)
    polygons = [{**p, "segmentation": a["segmentation"]} for p, a in zip(gt_derived(gt), gt["annotations"])]
    _assert_perfect(evaluator.evaluate(polygons))
    preds = perturbed(gt)
    uncompressed = []
    for pred in preds:
        mask = mask_utils.decode(pred["segmentation"])
        counts, values, run = [], mask.ravel(order="F"), 0
        current = 0
        for value in values:  # uncompressed RLE: run lengths starting with zeros, column-major
            if value != current:
                counts.append(run)
                run, current = 0, value
            run += 1
        counts.append(run)
        uncompressed.append({**pred, "segmentation": {"size": list(mask.shape), "counts": counts}})
    assert evaluator.evaluate(uncompressed) == evaluator.evaluate(preds)


def test_bbox_is_optional() -> None:
    gt = synthetic_gt()
    preds = [{k: v for k, v in p.items() if k != "bbox"} for p in gt_derived(gt)]
    _assert_perfect(CocoEvaluator(gt).evaluate(preds))


@pytest.mark.parametrize(
    "change, match",
    [
        ({"image_id": 999}, "image_id 999"),
        ({"category_id": 5}, "category_id 5"),
        ({"score": float("nan")}, "score"),
        ({"segmentation": {"size": [10, 10], "counts": "0"}}, "full resolution"),
    ],
)
def test_invalid_predictions_raise(change: dict, match: str) -> None:
    gt = synthetic_gt()
    preds = gt_derived(gt)
    preds[3] = {**preds[3], **change}
    with pytest.raises(ValueError, match=match):
        CocoEvaluator(gt).evaluate(preds)


# ---------------------------------------------------------------- results helpers


@pytest.mark.parametrize("kind", ["bool", "uint8", "torch"])
def test_instances_to_coco_round_trip(kind: str) -> None:
    rng = np.random.default_rng(3)
    n, height, width = 5, 37, 53  # odd sizes catch C/Fortran-order mix-ups
    masks = rng.random((n, height, width)) < 0.3
    boxes = rng.uniform(0, 30, size=(n, 4))
    boxes[:, 2:] += boxes[:, :2]
    scores, classes = rng.random(n), np.array([0, 2, 1, 2, 0])
    inputs = [boxes, scores, classes, masks.astype(np.uint8) if kind == "uint8" else masks]
    if kind == "torch":
        torch = pytest.importorskip("torch")
        inputs = [torch.from_numpy(np.asarray(a)) for a in inputs]
    results = instances_to_coco(42, *inputs, category_ids=(3, 7, 11))
    json.dumps(results)  # serialisable as is
    assert [r["category_id"] for r in results] == [3, 11, 7, 11, 3]
    for i, result in enumerate(results):
        assert result["image_id"] == 42 and isinstance(result["score"], float)
        assert result["score"] == pytest.approx(scores[i])
        x1, y1, x2, y2 = boxes[i]
        assert result["bbox"] == pytest.approx([x1, y1, x2 - x1, y2 - y1])
        assert all(isinstance(v, float) for v in result["bbox"])
        assert isinstance(result["segmentation"]["counts"], str)
        assert result["segmentation"]["size"] == [height, width]
        np.testing.assert_array_equal(mask_utils.decode(result["segmentation"]), masks[i])


def test_encode_masks_equals_pycocotools_encode() -> None:
    """Same bytes as pycocotools' encode, including masks on every border, full columns (runs
    that continue into the next column), full and empty masks, 0/255 uint8 and noise."""
    rng = np.random.default_rng(4)
    stacks = [np.ones((2, 7, 5), dtype=bool), np.zeros((3, 6, 9), dtype=np.uint8), np.zeros((0, 4, 4), dtype=bool)]
    column_run = np.zeros((1, 6, 4), dtype=bool)
    column_run[0, 3:, 1] = column_run[0, :, 2] = column_run[0, :2, 3] = True
    stacks.append(column_run)
    for _ in range(40):
        n, height, width = (int(v) for v in rng.integers(1, 25, size=3))
        stacks.append(rng.random((n, height, width)) < rng.random())
        blobs = np.zeros((n, height, width), dtype=np.uint8)
        for mask in blobs:
            y, x = rng.integers(0, height), rng.integers(0, width)
            mask[y : y + rng.integers(1, height + 1), x : x + rng.integers(1, width + 1)] = 255
        stacks.append(blobs)
    for masks in stacks:
        expected = mask_utils.encode(np.asfortranarray((masks != 0).transpose(1, 2, 0), dtype=np.uint8))
        assert encode_masks(masks) == list(expected)


def test_instances_to_coco_empty_and_invalid() -> None:
    empty = instances_to_coco(1, np.zeros((0, 4)), np.zeros(0), np.zeros(0, int), np.zeros((0, 8, 8), bool), (1,))
    assert empty == []
    with pytest.raises(TypeError, match="threshold"):
        instances_to_coco(1, np.zeros((1, 4)), [0.5], [0], np.zeros((1, 8, 8), float), (1,))
    with pytest.raises(ValueError, match="out of range"):
        instances_to_coco(1, np.zeros((1, 4)), [0.5], [1], np.zeros((1, 8, 8), bool), (1,))


def test_instances_to_coco_feeds_the_evaluator() -> None:
    gt = synthetic_gt()
    category_ids = [c["id"] for c in gt["categories"]]
    images = {img["id"]: img for img in gt["images"]}
    preds = []
    for image_id in images:
        anns = [a for a in gt["annotations"] if a["image_id"] == image_id]
        masks = np.stack([mask_utils.decode(_gt_rle(a, images[image_id])) for a in anns])
        boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)])
        classes = np.array([category_ids.index(a["category_id"]) for a in anns])
        preds += instances_to_coco(image_id, boxes, np.ones(len(anns)), classes, masks, category_ids)
    _assert_perfect(CocoEvaluator(gt).evaluate(preds))


def test_list_images(tmp_path: Path) -> None:
    gt = synthetic_gt()
    gt["images"].reverse()
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt))
    records = list_images(path, tmp_path / "imgs")
    assert records[0] == ImageRecord(6, tmp_path / "imgs" / "6.png", 320, 240)
    assert [r.image_id for r in records] == [6, 5, 4, 3, 2, 1]


# ---------------------------------------------------------------- CLI


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, str(REPO / "analysis/evaluate.py"), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=60,
    )


def test_cli_prints_metrics_json(tmp_path: Path) -> None:
    gt = synthetic_gt()
    preds = perturbed(gt)
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "preds.json").write_text(json.dumps(preds))
    proc = _cli(str(tmp_path / "gt.json"), str(tmp_path / "preds.json"))
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["max_dets"] == 100 and report["num_images"] == 6
    assert report["num_predictions"] == len(preds)
    assert_close({k: report[k] for k in METRIC_KEYS}, CocoEvaluator(gt).evaluate(preds))
    assert _cli("--help").returncode == 0


def test_cli_bad_files_exit_2(tmp_path: Path) -> None:
    gt = synthetic_gt()
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "broken.json").write_text("[{")
    (tmp_path / "foreign.json").write_text(json.dumps([{**gt_derived(gt)[0], "image_id": 999}]))
    cases = [
        (str(tmp_path / "missing.json"), "does not exist"),
        (str(tmp_path / "broken.json"), "not valid JSON"),
        (str(tmp_path / "gt.json"), "not a JSON list"),
        (str(tmp_path / "foreign.json"), "image_id 999"),
    ]
    for pred_path, message in cases:
        proc = _cli(str(tmp_path / "gt.json"), pred_path)
        assert proc.returncode == 2, (pred_path, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("evaluate.py: error: "), proc.stderr
        assert message in lines[0] and proc.stdout == ""
