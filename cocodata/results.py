"""Helpers adapters use to turn a framework's predictions into COCO result dicts.

Every adapter predicts per image (full-resolution masks, contiguous class indices) and calls
`instances_to_coco`, so that all frameworks hand CocoEvaluator the same kind of results.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segtune.cocodata.masks import encode_masks


@dataclass(frozen=True)
class ImageRecord:
    """One GT image: its COCO id, where its file is, and the size masks must have."""

    image_id: int
    path: Path
    width: int
    height: int


def list_images(gt_json: Path, images_dir: Path) -> list[ImageRecord]:
    """The images of a COCO file, in the file's order, with path = images_dir / file_name."""
    with open(gt_json) as f:
        dataset = json.load(f)
    images_dir = Path(images_dir)
    return [
        ImageRecord(int(img["id"]), images_dir / img["file_name"], int(img["width"]), int(img["height"]))
        for img in dataset["images"]
    ]


def _numpy(array: Any) -> np.ndarray:
    # torch tensors (possibly on a GPU, possibly requiring grad) without importing torch here.
    if hasattr(array, "detach"):
        array = array.detach().cpu().numpy()
    return np.asarray(array)


def instances_to_coco(
    image_id: int,
    boxes_xyxy: Any,
    scores: Any,
    class_indices: Any,
    masks: Any,
    category_ids: Sequence[int],
) -> list[dict]:
    """COCO result dicts for one image's N instances.

    boxes_xyxy (N, 4) in pixels, scores (N,), class_indices (N,) contiguous class indices,
    masks (N, H, W) bool/uint8 at the image's full resolution; numpy arrays or torch tensors.
    category_ids[i] is the COCO category id of class index i. Returns JSON-serialisable dicts
    {image_id, category_id, bbox [x, y, w, h], score, segmentation (RLE, counts as str)}.
    """
    boxes = _numpy(boxes_xyxy).astype(np.float64).reshape(-1, 4)
    scores_np = _numpy(scores).astype(np.float64).reshape(-1)
    classes = _numpy(class_indices).reshape(-1)
    masks_np = _numpy(masks)
    n = len(boxes)
    if masks_np.ndim == 2 and n == 0:
        masks_np = masks_np.reshape(0, *masks_np.shape)
    if masks_np.ndim != 3 or not (len(masks_np) == len(scores_np) == len(classes) == n):
        raise ValueError(
            f"instances_to_coco needs N boxes, scores, classes and (N, H, W) masks; got boxes "
            f"{boxes.shape}, scores {scores_np.shape}, classes {classes.shape}, "
            f"masks {masks_np.shape}"
        )
    if np.issubdtype(masks_np.dtype, np.floating):
        # Thresholding is the model's decision (and differs between frameworks), not ours.
        raise TypeError("masks must be bool or uint8; threshold soft masks before calling")
    if n == 0:
        return []
    if classes.min() < 0 or classes.max() >= len(category_ids):
        raise ValueError(
            f"class indices {classes.min()}..{classes.max()} out of range for {len(category_ids)} categories"
        )
    rles = encode_masks(masks_np)
    results = []
    for box, score, cls, rle in zip(boxes, scores_np, classes, rles):
        x1, y1, x2, y2 = (float(v) for v in box)
        results.append(
            {
                "image_id": int(image_id),
                "category_id": int(category_ids[int(cls)]),
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "score": float(score),
                "segmentation": {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")},
            }
        )
    return results
