"""The one COCO evaluator every framework's adapter reports through.

Frameworks compute their own, mutually incomparable mAPs (see DESIGN-NOTES.md); trials are ranked
only on what this module returns: COCOeval on full-resolution masks and boxes (run by the C++
engine of cocodata/coco_engine.py; the tests hold every figure to pycocotools').

Why the ground truth is normalised before evaluation (found on the shared Roboflow export
microcontroller_seg, where predictions copied from the GT scored 86-99 AP instead of 100):
pycocotools records a match by storing the *annotation id* of the matched GT in `dtMatches`, and
`accumulate()` counts a detection as a true positive when that entry is non-zero. Roboflow (and
other exporters) number annotations from 0, so the detection matched to GT annotation id 0 is
counted as a false positive and that GT as missed: one spurious FP + FN per split, on every
prediction set, real or perfect. Renumbering the GT annotations 1..N removes the artefact; ids
carry no other meaning in COCOeval, so real predictions are scored exactly as intended.
Other exporter quirks handled the same way (none changes the metric's meaning):
- `iscrowd` missing -> 0 (COCOeval raises KeyError otherwise);
- `area` missing -> the mask's area (used for the small/medium/large ranges);
- polygons with fewer than 6 numbers are degenerate (no area) and are dropped: one of exactly
  4 numbers listed first makes `frPyObjects` decode the whole list as *boxes*.
"""
from __future__ import annotations

import copy
import json
import math
import numbers
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from cocodata import coco_engine

METRIC_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")
METRIC_KEYS = tuple(f"{task}/{name}" for task in ("segm", "bbox") for name in METRIC_NAMES)

_TASKS = ("segm", "bbox")
_AREA_LABELS = {"APs": "small", "APm": "medium", "APl": "large"}


def _clean_polygons(segm: list, where: str) -> list:
    polygons = []
    for poly in segm:
        if not isinstance(poly, (list, tuple)):
            raise ValueError(f"{where}: a polygon segmentation must be a list of coordinate lists")
        poly = list(poly[: len(poly) // 2 * 2])  # an odd trailing number has no partner
        if len(poly) >= 6:  # fewer than 3 points: no area, and 4 numbers would be read as a box
            polygons.append(poly)
    return polygons


def _to_rle(segm: Any, height: int, width: int, where: str) -> dict:
    """Compressed RLE for a polygon list, uncompressed RLE or compressed RLE segmentation."""
    if isinstance(segm, list):
        polygons = _clean_polygons(segm, where)
        if not polygons:  # an empty mask, not an error: it simply cannot be matched
            return mask_utils.encode(np.zeros((height, width, 1), dtype=np.uint8, order="F"))[0]
        return mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
    if isinstance(segm, dict) and "counts" in segm and "size" in segm:
        if list(segm["size"]) != [height, width]:
            raise ValueError(
                f"{where}: RLE size {list(segm['size'])} differs from the image's [height, width] "
                f"[{height}, {width}]; masks must be at the image's full resolution"
            )
        if isinstance(segm["counts"], list):  # uncompressed RLE
            return mask_utils.frPyObjects(segm, height, width)
        return {"size": [height, width], "counts": segm["counts"]}
    raise ValueError(f"{where}: segmentation must be polygons (list of lists) or an RLE dict")


def _normalise_gt(dataset: dict) -> dict:
    """A copy of the GT with the pycocotools pitfalls described in the module docstring removed."""
    for key in ("images", "annotations", "categories"):
        if not isinstance(dataset.get(key), list):
            raise ValueError(f"ground truth has no '{key}' list: is this a COCO instances file?")
    data = copy.deepcopy(dataset)
    images = {}
    for img in data["images"]:
        if "height" not in img or "width" not in img:
            raise ValueError(f"ground-truth image {img.get('id')} has no height/width")
        images[img["id"]] = img
    for number, ann in enumerate(data["annotations"], start=1):
        where = f"ground-truth annotation {ann.get('id')}"
        img = images.get(ann.get("image_id"))
        if img is None:
            raise ValueError(f"{where} refers to image id {ann.get('image_id')}, not in 'images'")
        if "segmentation" not in ann:
            raise ValueError(f"{where} has no segmentation: instance-segmentation GT needs masks")
        ann["id"] = number  # never 0: see module docstring
        ann["iscrowd"] = int(ann.get("iscrowd", 0) or 0)
        # Converted once here rather than on every evaluate(), which COCOeval would otherwise do.
        ann["segmentation"] = _to_rle(ann["segmentation"], img["height"], img["width"], where)
        if "area" not in ann:
            ann["area"] = float(mask_utils.area(ann["segmentation"]))
        if "bbox" not in ann:
            ann["bbox"] = mask_utils.toBbox(ann["segmentation"]).tolist()
    return data


class CocoEvaluator:
    """COCO mask and box AP of predictions against one ground-truth file, loaded once.

    `evaluate()` returns the 12 METRIC_KEYS ("segm/AP", ..., "bbox/APl") in percent (0-100, as
    COCO tables print them). -1 = no ground truth of that size (e.g. "segm/APs" on a dataset
    without small objects); every other value is a finite number in [0, 100], never NaN.
    The matching runs in C++ (cocodata/coco_engine.py); the figures are pycocotools' own.
    """

    def __init__(self, gt: Path | str | dict) -> None:
        if isinstance(gt, dict):
            dataset = gt
        else:
            with open(gt) as f:
                dataset = json.load(f)
        with coco_engine.paused_gc():
            self.dataset = _normalise_gt(dataset)
            self._gt = coco_engine.GroundTruth(self.dataset)
        self.image_ids: frozenset[int] = frozenset(img["id"] for img in self.dataset["images"])
        self.category_ids: frozenset[int] = frozenset(
            cat["id"] for cat in self.dataset["categories"])
        self._sizes = {img["id"]: (img["height"], img["width"]) for img in self.dataset["images"]}
        per_image = Counter(ann["image_id"] for ann in self.dataset["annotations"])
        # COCO's default of 100 detections per image would cap recall on dense scenes.
        self.max_dets: int = max(100, max(per_image.values(), default=0))

    def _check(self, pred: Any, index: int) -> None:
        where = f"prediction {index}"
        if not isinstance(pred, dict):
            raise ValueError(f"{where} is not a dict (COCO results are a list of objects)")
        for key in ("image_id", "category_id", "score", "segmentation"):
            if key not in pred:
                raise ValueError(f"{where} has no '{key}'")
        if pred["image_id"] not in self.image_ids:
            raise ValueError(
                f"{where} has image_id {pred['image_id']!r}, which is not in the ground truth: "
                "predictions must use the GT file's image ids"
            )
        if pred["category_id"] not in self.category_ids:
            raise ValueError(
                f"{where} has category_id {pred['category_id']!r}, which is not in the ground "
                f"truth {sorted(self.category_ids)}: map class indices back to COCO category ids"
            )
        score = pred["score"]
        # The exact type test first: the ABC check alone took ~10% of evaluate() on dense sets.
        numeric = type(score) is float or isinstance(score, numbers.Real)
        if not numeric or not math.isfinite(score):
            raise ValueError(f"{where} has a non-finite or non-numeric score {score!r}")

    def _split(self, predictions: list[dict]) -> coco_engine.Detections:
        """Checked predictions as columns: ids, scores, RLE masks and [x, y, w, h] boxes.

        Each task later gets only its own geometry: with both on one detection, pycocotools'
        loadRes would give mask AP box areas (detectron2 drops the boxes for the same reason).
        The caller's dicts are only read.
        """
        image_ids, category_ids, scores, masks, boxes = [], [], [], [], []
        for index, pred in enumerate(predictions):
            self._check(pred, index)
            height, width = self._sizes[pred["image_id"]]
            masks.append(_to_rle(pred["segmentation"], height, width, f"prediction {index}"))
            image_ids.append(pred["image_id"])
            category_ids.append(pred["category_id"])
            scores.append(pred["score"])
            boxes.append(pred.get("bbox"))
        return coco_engine.Detections(
            image_ids=np.array(image_ids), category_ids=np.array(category_ids),
            scores=np.array(scores, dtype=np.float64).reshape(-1), masks=masks,
            boxes=_boxes(boxes, masks))

    @staticmethod
    def _stats(precision: np.ndarray) -> dict[str, float]:
        """AP figures as COCOeval._summarize computes them from precision [T, R, K, A] at the
        last maxDets: the mean over entries > -1, or -1 when there are none.

        summarize() itself cannot be used: it looks up stats[0] at a hard-coded maxDets=100, which
        is absent (and yields -1) whenever max_dets != 100. No detections give precision 0 (not
        -1) wherever there is GT, so they score 0, never NaN.
        """
        out = {}
        for name in METRIC_NAMES:
            p = precision[..., coco_engine.AREA_LABELS.index(_AREA_LABELS.get(name, "all"))]
            if name in ("AP50", "AP75"):
                p = p[np.isclose(coco_engine.IOU_THRESHOLDS, 0.5 if name == "AP50" else 0.75)]
            valid = p[p > -1]
            out[name] = float(np.mean(valid)) * 100.0 if valid.size else -1.0
        return out

    def evaluate(self, predictions: list[dict]) -> dict[str, float]:
        """COCO AP of `predictions` (COCO result dicts) for masks and boxes, in percent.

        Each prediction needs image_id, category_id, score and segmentation (polygons or RLE at
        the image's resolution); bbox [x, y, w, h] is optional (taken from the mask if absent).
        Raises ValueError for image or category ids that are not in the ground truth.
        Returns METRIC_KEYS -> value; -1 = no ground truth of that size. No predictions -> 0.0
        (and -1 where there is no ground truth of that size).
        """
        if not isinstance(predictions, list):
            raise ValueError("predictions must be a list of COCO result dicts")
        metrics: dict[str, float] = {}
        with coco_engine.paused_gc():
            detections = self._split(predictions)
            for task in _TASKS:
                precision = coco_engine.precision(self._gt, detections, task, self.max_dets)
                for name, value in self._stats(precision).items():
                    metrics[f"{task}/{name}"] = value
        return metrics


def _boxes(boxes: list[Any], masks: list[dict]) -> np.ndarray:
    """(N, 4) float boxes from predictions' optional bboxes; a missing one is the mask's box
    (boxes are derivable from masks, not the other way round). ValueError names a bad one."""
    missing = [index for index, box in enumerate(boxes) if box is None]
    if missing:
        derived = coco_engine.mask_boxes([masks[i] for i in missing]).tolist()
        boxes = list(boxes)
        for index, box in zip(missing, derived):
            boxes[index] = box
    array = _box_array(boxes)
    if array is None:  # name the first culprit; only then is each box looked at in Python
        for index, box in enumerate(boxes):
            if not _valid_box(box):
                raise ValueError(f"prediction {index} has an invalid bbox {box!r}: "
                                 "need [x, y, w, h]")
        array = np.array(boxes, dtype=np.float64)
    return array


def _box_array(boxes: list[Any]) -> np.ndarray | None:
    """All boxes as one (N, 4) float array, or None unless each is 4 finite numbers."""
    if not boxes:
        return np.zeros((0, 4))
    try:
        array = np.array(boxes)
    except (TypeError, ValueError):  # ragged
        return None
    if array.shape != (len(boxes), 4) or array.dtype.kind not in "iuf":
        return None
    array = array.astype(np.float64)
    return array if np.isfinite(array).all() else None


def _valid_box(box: Any) -> bool:
    try:
        return len(box) == 4 and all(isinstance(v, numbers.Real) and math.isfinite(v)
                                     for v in box)
    except TypeError:  # no len()
        return False
