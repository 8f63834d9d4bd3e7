"""The one COCO evaluator every framework's adapter reports through.

Frameworks compute their own, mutually incomparable mAPs (see DESIGN-NOTES.md); trials are ranked
only on what this module returns: COCOeval on full-resolution masks and boxes (run by the C++
engine of cocodata/coco_engine.py; the tests hold every figure to pycocotools'), against ground
truth normalised by `cocodata.ground_truth.normalise` (the same normalisation the prepared dataset
had: ids from 0 renumbered, missing iscrowd/area/bbox filled, boxes clipped; see there why each
matters), with polygons cleaned and converted by `cocodata.masks`.
"""

from __future__ import annotations

import json
import math
import numbers
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from segtune.cocodata import coco_engine, masks
from segtune.cocodata.ground_truth import detection_limit, normalise

METRIC_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")
METRIC_KEYS = tuple(f"{task}/{name}" for task in ("segm", "bbox") for name in METRIC_NAMES)

_TASKS = ("segm", "bbox")
_AREA_LABELS = {"APs": "small", "APm": "medium", "APl": "large"}


def _to_rle(segm: Any, height: int, width: int, where: str) -> dict:
    """Compressed RLE of a polygon list or RLE; ValueError naming `where` otherwise."""
    try:
        return masks.to_rle(segm, height, width)
    except masks.MaskError as exc:
        raise ValueError(f"{where}: {exc}") from None


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
            # Segmentations converted to RLE once here rather than on every evaluate().
            self.dataset = normalise(dataset, as_rle=True)
            self._gt = coco_engine.GroundTruth(self.dataset)
        self.image_ids: frozenset[int] = frozenset(img["id"] for img in self.dataset["images"])
        self.category_ids: frozenset[int] = frozenset(cat["id"] for cat in self.dataset["categories"])
        self._sizes = {img["id"]: (img["height"], img["width"]) for img in self.dataset["images"]}
        per_image = Counter(ann["image_id"] for ann in self.dataset["annotations"])
        # COCO's default of 100 detections per image would cap recall on dense scenes.
        self.max_dets: int = detection_limit(max(per_image.values(), default=0))

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
        image_ids, category_ids, scores, rles, boxes = [], [], [], [], []
        for index, pred in enumerate(predictions):
            self._check(pred, index)
            height, width = self._sizes[pred["image_id"]]
            rles.append(_to_rle(pred["segmentation"], height, width, f"prediction {index}"))
            image_ids.append(pred["image_id"])
            category_ids.append(pred["category_id"])
            scores.append(pred["score"])
            boxes.append(pred.get("bbox"))
        return coco_engine.Detections(
            image_ids=np.array(image_ids),
            category_ids=np.array(category_ids),
            scores=np.array(scores, dtype=np.float64).reshape(-1),
            masks=rles,
            boxes=_boxes(boxes, rles),
        )

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
                raise ValueError(f"prediction {index} has an invalid bbox {box!r}: need [x, y, w, h]")
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
        return len(box) == 4 and all(isinstance(v, numbers.Real) and math.isfinite(v) for v in box)
    except TypeError:  # no len()
        return False
