"""The one COCO evaluator every framework's adapter reports through.

Frameworks compute their own, mutually incomparable mAPs (see DESIGN-NOTES.md); trials are ranked
only on what this module returns: COCOeval on full-resolution masks and boxes, against ground
truth normalised by `cocodata.ground_truth.normalise` (the same normalisation the prepared
dataset had: ids from 0 renumbered, missing iscrowd/area/bbox filled, boxes clipped; see there
why each matters), with polygons cleaned and converted by `cocodata.masks`.
"""
from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import numbers
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from cocodata import masks
from cocodata.ground_truth import detection_limit, normalise

METRIC_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")
METRIC_KEYS = tuple(f"{task}/{name}" for task in ("segm", "bbox") for name in METRIC_NAMES)

_TASKS = ("segm", "bbox")
_AREA_LABELS = {"APs": "small", "APm": "medium", "APl": "large"}


def _quiet() -> contextlib.AbstractContextManager:
    # pycocotools prints progress for every load, index and evaluation step.
    return contextlib.redirect_stdout(io.StringIO())


def _to_rle(segm: Any, height: int, width: int, where: str) -> dict:
    """Compressed RLE of a polygon list or RLE; ValueError naming `where` otherwise."""
    try:
        return masks.to_rle(segm, height, width)
    except masks.MaskError as exc:
        raise ValueError(f"{where}: {exc}") from None


def _normalise_gt(dataset: dict) -> dict:
    """The normalised GT with every segmentation as RLE, converted once here rather than on every
    evaluate(), which COCOeval would otherwise do."""
    data = normalise(dataset)
    sizes = {img["id"]: (img["height"], img["width"]) for img in data["images"]}
    for ann in data["annotations"]:
        ann["segmentation"] = _to_rle(ann["segmentation"], *sizes[ann["image_id"]],
                                      f"ground-truth annotation {ann['id']}")
    return data


class CocoEvaluator:
    """COCO mask and box AP of predictions against one ground-truth file, loaded once.

    `evaluate()` returns the 12 METRIC_KEYS ("segm/AP", ..., "bbox/APl") in percent (0-100, as
    COCO tables print them). -1 = no ground truth of that size (e.g. "segm/APs" on a dataset
    without small objects); every other value is a finite number in [0, 100], never NaN.
    """

    def __init__(self, gt: Path | str | dict) -> None:
        if isinstance(gt, dict):
            dataset = gt
        else:
            with open(gt) as f:
                dataset = json.load(f)
        self.dataset = _normalise_gt(dataset)
        self.coco_gt = COCO()
        self.coco_gt.dataset = self.dataset
        with _quiet():
            self.coco_gt.createIndex()
        self.image_ids: frozenset[int] = frozenset(self.coco_gt.imgs)
        self.category_ids: frozenset[int] = frozenset(self.coco_gt.cats)
        self._sizes = {i: (img["height"], img["width"]) for i, img in self.coco_gt.imgs.items()}
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
        if not isinstance(pred["score"], numbers.Real) or not math.isfinite(pred["score"]):
            raise ValueError(f"{where} has a non-finite or non-numeric score {pred['score']!r}")

    def _split(self, predictions: list[dict]) -> tuple[list[dict], list[dict]]:
        """Per-task copies: segm results carry only masks, bbox results only boxes.

        With both keys present, loadRes takes its bbox branch for both tasks and sets every
        detection's area to the box area, so mask AP's small/medium/large ranges would use box
        areas (detectron2 drops the boxes for the same reason). Copies also keep the caller's
        dicts unmodified: loadRes writes id/area/iscrowd into them.
        """
        segm, bbox = [], []
        for index, pred in enumerate(predictions):
            self._check(pred, index)
            height, width = self._sizes[pred["image_id"]]
            rle = _to_rle(pred["segmentation"], height, width, f"prediction {index}")
            common = {"image_id": pred["image_id"], "category_id": pred["category_id"],
                      "score": float(pred["score"])}
            box = pred.get("bbox")
            if box is None:  # boxes are derivable from masks, not the other way round
                box = mask_utils.toBbox(rle).tolist()
            elif len(box) != 4 or not all(math.isfinite(v) for v in box):
                raise ValueError(f"prediction {index} has an invalid bbox {box!r}: "
                                 "need [x, y, w, h]")
            segm.append({**common, "segmentation": rle})
            bbox.append({**common, "bbox": [float(v) for v in box]})
        return segm, bbox

    def _results(self, anns: list[dict]) -> COCO:
        if anns:
            return self.coco_gt.loadRes(anns)
        # loadRes indexes anns[0]: an empty result set is built by hand (no detections -> AP 0).
        res = COCO()
        res.dataset = {"images": list(self.dataset["images"]),
                       "categories": copy.deepcopy(self.dataset["categories"]), "annotations": []}
        res.createIndex()
        return res

    def _stats(self, coco_eval: COCOeval) -> dict[str, float]:
        """AP figures as COCOeval._summarize computes them, at the last maxDets index.

        summarize() itself cannot be used: it looks up stats[0] at a hard-coded maxDets=100, which
        is absent (and yields -1) whenever max_dets != 100.
        """
        params = coco_eval.params
        precision = coco_eval.eval["precision"][..., -1]  # [T, R, K, A] at maxDets[-1]
        out = {}
        for name in METRIC_NAMES:
            area = params.areaRngLbl.index(_AREA_LABELS.get(name, "all"))
            p = precision[..., area]
            if name in ("AP50", "AP75"):
                p = p[np.isclose(params.iouThrs, 0.5 if name == "AP50" else 0.75)]
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
        segm, bbox = self._split(predictions)
        metrics: dict[str, float] = {}
        with _quiet():
            for task, anns in zip(_TASKS, (segm, bbox)):
                coco_eval = COCOeval(self.coco_gt, self._results(anns), task)
                coco_eval.params.maxDets = [1, 10, self.max_dets]
                coco_eval.evaluate()
                coco_eval.accumulate()
                for name, value in self._stats(coco_eval).items():
                    metrics[f"{task}/{name}"] = value
        return metrics
