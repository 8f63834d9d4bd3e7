"""One normalisation of COCO ground truth, for the prepared dataset and for the evaluator alike.

Trials are scored against the prepared val JSON and `analysis/evaluate.py` scores a user's own
JSON: both go through `normalise`, so the same predictions get the same AP either way.

What it does (none of it changes what a correct prediction is):
- `iscrowd` missing -> 0 (COCOeval raises KeyError otherwise);
- `area` missing -> the mask's area; `bbox` missing -> the mask's box (boxes are derivable from
  masks, not the other way round); every box clipped to its image;
- annotation ids renumbered when one is below 1 (Roboflow and other exporters number from 0):
  pycocotools records a match by storing the matched annotation's id, 0 meaning "unmatched", so a
  detection matched to annotation id 0 counts as a false positive and that object as missed — one
  spurious FP + FN per file, on every prediction set, perfect ones included. Ids carry no other
  meaning in COCOeval; image and category ids, which predictions refer to, are kept.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from segtune.cocodata import masks

COCO_MAX_DETS = 100  # COCO's own detections per image


def detection_limit(max_objects_per_image: int) -> int:
    """Detections per image a model outputs and the evaluator counts (its maxDets): COCO's 100, or
    twice the objects of the densest image when that is more.

    At the limit, every false positive scored above a true one pushes a true one out of the
    ranked list. With twice the objects, recall on the densest image is capped only when more
    false positives than there are objects outscore true ones, i.e. when precision over the
    whole list is already below 50 %; a limit equal to the object count (no headroom) caps it at
    the first such false positive, and a perfect model would need perfect ranking.
    """
    return max(COCO_MAX_DETS, 2 * int(max_objects_per_image))


def normalise(
    data: Mapping[str, Any], image_ids: Iterable[int] | None = None, *, as_rle: bool = False
) -> dict[str, Any]:
    """A normalised copy of a COCO instances dict, restricted to `image_ids` when given; with
    `as_rle`, every segmentation converted to compressed RLE (once: area and box come from it).

    Raises ValueError naming the entry when the dict is not usable instance-segmentation ground
    truth (the prepared dataset was validated before; `analysis/evaluate.py` input was not).
    """
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise ValueError(f"ground truth has no '{key}' list: is this a COCO instances file?")
    keep = None if image_ids is None else set(image_ids)
    images = [dict(im) for im in data["images"] if keep is None or im.get("id") in keep]
    sizes = {}
    for image in images:
        if "height" not in image or "width" not in image:
            raise ValueError(f"ground-truth image {image.get('id')} has no height/width")
        sizes[image["id"]] = (int(image["height"]), int(image["width"]))
    listed = {im.get("id") for im in data["images"]}
    annotations = []
    for source in data["annotations"]:
        where = f"ground-truth annotation {source.get('id')}"
        if source.get("image_id") not in sizes:
            if source.get("image_id") not in listed:
                raise ValueError(f"{where} refers to image id {source.get('image_id')}, not in 'images'")
            continue  # an image left out of this split
        if "segmentation" not in source:
            raise ValueError(f"{where} has no segmentation: instance-segmentation GT needs masks")
        annotations.append(_normalise_annotation(dict(source), *sizes[source["image_id"]], where, as_rle))
    renumber_annotation_ids(annotations)
    return {
        "info": data.get("info") or {},
        "licenses": data.get("licenses") or [],
        "images": images,
        "annotations": annotations,
        "categories": [dict(c) for c in data["categories"]],
    }


def _normalise_annotation(ann: dict[str, Any], height: int, width: int, where: str, as_rle: bool) -> dict[str, Any]:
    ann["iscrowd"] = int(ann.get("iscrowd") or 0)
    if as_rle or ann.get("area") is None or ann.get("bbox") is None:
        try:
            rle = masks.to_rle(ann["segmentation"], height, width)
        except masks.MaskError as exc:
            raise ValueError(f"{where}: {exc}") from None
        if as_rle:
            ann["segmentation"] = rle
        if ann.get("area") is None:
            ann["area"] = masks.area(rle)
        if ann.get("bbox") is None:
            ann["bbox"] = masks.box_of(rle)
    ann["bbox"] = masks.clip_box(ann["bbox"], width, height)
    return ann


def has_zero_based_ids(data: Mapping[str, Any]) -> bool:
    """True when some annotation id is below 1 (see the module docstring)."""
    return any(isinstance(a.get("id"), int) and a["id"] < 1 for a in data.get("annotations", ()))


def renumber_annotation_ids(annotations: list[dict[str, Any]]) -> bool:
    """Make every annotation id a unique int >= 1, in place; True when ids changed.

    Ids that are unique ints are shifted (their order and gaps kept); missing or repeated ids are
    numbered 1..N in file order.
    """
    ids = [a.get("id") for a in annotations]
    unique_ints = all(isinstance(i, int) and not isinstance(i, bool) for i in ids) and len(set(ids)) == len(ids)
    if unique_ints:
        lowest = min(ids, default=1)
        if lowest >= 1:
            return False
        for ann in annotations:
            ann["id"] += 1 - lowest
        return True
    for number, ann in enumerate(annotations, start=1):
        ann["id"] = number
    return True
