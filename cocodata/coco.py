"""Reading and checking COCO instance-segmentation files, once, before anything is converted.

Every problem is collected (not just the first), grouped by kind, and reported as one line per
kind: what is wrong, where (file, first offending id, how many more), and how to fix it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segtune.cocodata.findings import Findings
from segtune.cocodata.images import ImageInfo
from segtune.cocodata.orientation import annotated_view, describe

ANNOTATION_KEYS = ("id", "image_id", "category_id")
BBOX_TOLERANCE_PX = 1.0  # boxes this far outside the image are rounding, not a finding


@dataclass
class CocoFile:
    """A parsed COCO annotation file and the folder its `file_name`s are relative to."""

    json_path: Path
    images_dir: Path
    data: dict[str, Any]
    raw: bytes
    label: str  # how messages name the file

    def image_paths(self) -> dict[int, Path]:
        """id -> image path for every well-formed image entry (the first one of a duplicated id)."""
        paths: dict[int, Path] = {}
        for image in self.data["images"]:
            if _is_image_entry(image):
                paths.setdefault(image["id"], self.images_dir / image["file_name"])
        return paths


def load_coco(json_path: Path, images_dir: Path, findings: Findings, label: str = "") -> CocoFile | None:
    """Parse one annotation file; on failure record why and return None."""
    label = label or json_path.name
    try:
        raw = json_path.read_bytes()
    except FileNotFoundError:
        findings.error(label, "missing", f"not found at {json_path}", "check the path")
        return None
    except OSError as exc:
        findings.error(label, "unreadable", f"cannot be read ({exc})", "check its permissions")
        return None
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        findings.error(label, "json", f"is not valid JSON ({exc})", "re-export or repair the file")
        return None
    keys = ("images", "annotations", "categories")
    missing = [k for k in keys if not isinstance(data.get(k) if isinstance(data, dict) else None, list)]
    if missing:
        findings.error(
            label,
            "not-coco",
            f"is not a COCO instances file (no {', '.join(repr(k) for k in missing)} list)",
            "export the annotations in COCO instance-segmentation format (instances_<split>.json)",
        )
        return None
    if not images_dir.is_dir():
        findings.error(label, "images-dir", f"its image folder {images_dir} does not exist", "check the path")
        return None
    return CocoFile(json_path, images_dir, data, raw, label)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_image_entry(image: Any) -> bool:
    return isinstance(image, dict) and _is_int(image.get("id")) and isinstance(image.get("file_name"), str)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class _At:
    """Findings about one file: `at.error(kind, what, fix, name)`."""

    def __init__(self, findings: Findings, where: str) -> None:
        self.findings, self.where = findings, where

    def error(self, kind: str, what: str, fix: str, name: object = "") -> None:
        self.findings.error(self.where, kind, what, fix, str(name))

    def warn(self, kind: str, what: str, fix: str = "", name: object = "") -> None:
        self.findings.warn(self.where, kind, what, fix, str(name))


def check_coco(coco: CocoFile, infos: Mapping[int, ImageInfo], findings: Findings, *, split: str) -> None:
    """Record every problem of one split's annotation file (and its image files) in `findings`."""
    at = _At(findings, coco.label)
    data = coco.data
    categories = _check_categories(data["categories"], at)
    sizes = _check_images(data["images"], infos, at)
    listed = {im["id"] for im in data["images"] if isinstance(im, dict) and _is_int(im.get("id"))}
    annotated: set[int] = set()
    annotation_ids: set[int] = set()
    known = sorted(categories)
    known_text = str(known) if len(known) <= 10 else f"{known[0]}..{known[-1]}"
    for index, ann in enumerate(data["annotations"]):
        if not (isinstance(ann, dict) and all(_is_int(ann.get(k)) for k in ANNOTATION_KEYS)):
            at.error(
                "bad-annotation",
                f"annotation entry #{index} lacks an integer id, image_id or category_id",
                "fix or delete it",
            )
            continue
        ann_id, image_id = ann["id"], ann["image_id"]
        if ann_id in annotation_ids:
            at.error(
                "dup-annotation",
                f"annotation id {ann_id} is used more than once",
                "give every annotation a unique id",
                ann_id,
            )
            continue
        annotation_ids.add(ann_id)
        if image_id not in sizes:
            if image_id not in listed:  # listed but unusable images were reported already
                at.error(
                    "unknown-image",
                    f"annotation {ann_id} refers to image {image_id}, which is not in 'images'",
                    "fix its image_id or delete it",
                    ann_id,
                )
            continue
        if ann["category_id"] not in categories:
            at.error(
                "unknown-category",
                f"annotation {ann_id} has category_id {ann['category_id']}, which "
                f"is not in 'categories' (ids {known_text})",
                "add the category or fix the annotation",
                ann_id,
            )
            continue
        if _check_annotation(ann, sizes[image_id], at):
            annotated.add(image_id)

    if not data["annotations"]:
        purpose = "nothing to train on" if split == "train" else "nothing to evaluate against"
        at.error(
            "no-annotations",
            f"has no annotations ({purpose})",
            "annotate at least one object, or point to the right file",
        )
        return
    for image in data["images"]:
        if isinstance(image, dict) and image.get("id") in sizes and image["id"] not in annotated:
            at.warn(
                "background",
                f"image {image['id']} ({image['file_name']}) has no annotations",
                "it is kept as a background image",
                image["id"],
            )


def _check_categories(categories: list[Any], at: _At) -> dict[int, str]:
    names: dict[int, str] = {}
    for index, cat in enumerate(categories):
        if not (isinstance(cat, dict) and _is_int(cat.get("id")) and isinstance(cat.get("name"), str)):
            at.error(
                "bad-category",
                f"category entry #{index} has no integer 'id' and string 'name'",
                "fix the 'categories' list",
            )
        elif cat["id"] in names:
            at.error("dup-category", f"category id {cat['id']} is listed twice", "give every category a unique id")
        else:
            names[cat["id"]] = cat["name"]
    return names


def _check_images(images: list[Any], infos: Mapping[int, ImageInfo], at: _At) -> dict[int, tuple[int, int]]:
    """id -> (width, height) of the usable image entries."""
    sizes: dict[int, tuple[int, int]] = {}
    seen: set[int] = set()
    for index, image in enumerate(images):
        if not _is_image_entry(image):
            at.error(
                "bad-image", f"image entry #{index} has no integer 'id' and string 'file_name'", "fix the 'images' list"
            )
            continue
        image_id, name = image["id"], image["file_name"]
        if image_id in seen:
            sizes.pop(image_id, None)  # its annotations cannot be told apart: check none of them
            at.error(
                "dup-image",
                f"image id {image_id} is used by more than one image",
                "give every image a unique id",
                image_id,
            )
            continue
        seen.add(image_id)
        width, height = image.get("width"), image.get("height")
        if not (_is_int(width) and _is_int(height) and width > 0 and height > 0):
            at.error(
                "bad-size",
                f"image {image_id} ({name}) has no positive integer width/height",
                "add the image size to the JSON",
                image_id,
            )
            continue
        sizes[image_id] = (width, height)
        _check_image_file(image, infos.get(image_id), at)
    return sizes


def _check_image_file(image: dict[str, Any], info: ImageInfo | None, at: _At) -> None:
    image_id, name = image["id"], image["file_name"]
    if info is None:
        return
    if info.error == "missing":
        at.error(
            "missing-file",
            f"image {image_id} ({name}) is missing: no file at {info.path}",
            "put the file there or delete the image and its annotations",
            name,
        )
    elif info.error:
        at.error(
            "unreadable-file",
            f"image {image_id} ({name}) is {info.error}",
            "replace the file or delete the image and its annotations",
            name,
        )
    elif (image["width"], image["height"]) not in (info.size, info.display_size):
        width, height = info.size or (0, 0)
        turned = f" ({height}x{width} with its EXIF orientation {info.orientation} applied)" if info.rotated else ""
        at.error(
            "size-mismatch",
            f"image {image_id} ({name}) is {width}x{height}{turned} but the JSON says "
            f"{image['width']}x{image['height']}",
            "fix width/height or re-export the annotations",
            name,
        )
    elif (view := annotated_view(info, image["width"], image["height"])) is not None:
        kind, what = describe(name, info, view)
        at.warn(kind, what, "the cache holds that view without the tag, so every framework reads it", name)


def _check_annotation(ann: dict[str, Any], size: tuple[int, int], at: _At) -> bool:
    """Check one annotation's geometry; False when it is unusable (an error was recorded)."""
    ann_id, (width, height) = ann["id"], size
    segmentation = ann.get("segmentation")
    if isinstance(segmentation, list):
        if not segmentation:
            at.error(
                "no-segmentation",
                f"annotation {ann_id} has an empty segmentation",
                "draw its mask or delete it",
                ann_id,
            )
            return False
        for polygon in segmentation:
            if not (isinstance(polygon, list) and len(polygon) % 2 == 0 and all(map(_is_number, polygon))):
                at.error(
                    "bad-polygon",
                    f"annotation {ann_id} has a polygon that is not an even-length list of numbers",
                    "fix or delete it",
                    ann_id,
                )
                return False
            if len(polygon) < 6:
                points = len(polygon) // 2
                at.error(
                    "short-polygon",
                    f"annotation {ann_id} has a polygon with {points} points (a polygon needs >= 3)",
                    "fix or delete it",
                    ann_id,
                )
                return False
    elif isinstance(segmentation, dict):  # RLE (crowd regions, or masks exported as RLE)
        rle_size = segmentation.get("size")
        if not isinstance(segmentation.get("counts"), (str, list)) or rle_size != [height, width]:
            at.error(
                "bad-rle",
                f"annotation {ann_id} has an RLE mask with size {rle_size} for a "
                f"{width}x{height} image (RLE size is [height, width])",
                "fix or delete it",
                ann_id,
            )
            return False
    else:
        at.error(
            "no-segmentation",
            f"annotation {ann_id} has no segmentation (polygons or RLE)",
            "draw its mask or delete it",
            ann_id,
        )
        return False
    if ann.get("iscrowd", 0) not in (0, 1, None):
        at.error("bad-iscrowd", f"annotation {ann_id} has iscrowd={ann['iscrowd']!r}", "use 0 or 1", ann_id)
        return False
    bbox = ann.get("bbox")
    if bbox is None:
        return True  # filled from the mask when the normalised JSON is written
    return _check_bbox(ann_id, bbox, width, height, at)


def _check_bbox(ann_id: int, bbox: Any, width: int, height: int, at: _At) -> bool:
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(map(_is_number, bbox))):
        at.error(
            "bad-bbox", f"annotation {ann_id} has bbox {bbox!r}, not [x, y, width, height]", "fix or delete it", ann_id
        )
        return False
    x, y, w, h = bbox
    if w <= 0 or h <= 0:
        at.error(
            "empty-bbox", f"annotation {ann_id} has a box of non-positive size {w}x{h}", "fix or delete it", ann_id
        )
        return False
    if x >= width or y >= height or x + w <= 0 or y + h <= 0:
        at.error(
            "bbox-outside",
            f"annotation {ann_id} has box {bbox} entirely outside its {width}x{height} image",
            "fix or delete it",
            ann_id,
        )
        return False
    tol = BBOX_TOLERANCE_PX
    if x < -tol or y < -tol or x + w > width + tol or y + h > height + tol:
        at.warn(
            "bbox-clipped",
            f"annotation {ann_id} has box {bbox} partly outside its {width}x{height} image",
            "it is clipped to the image",
            ann_id,
        )
    return True


def check_categories_match(train: CocoFile, val: CocoFile, findings: Findings) -> None:
    """Train and val must agree on what each category id means."""

    def names(coco: CocoFile) -> dict[int, str]:
        return {c["id"]: c["name"] for c in coco.data["categories"] if isinstance(c, dict) and "id" in c}

    at = _At(findings, val.label)
    fix = "export both splits with the same category list"
    train_names = names(train)
    for cat_id, name in names(val).items():
        if cat_id not in train_names:
            at.error("category-not-in-train", f"category {cat_id} ({name!r}) is not in {train.label}", fix, cat_id)
        elif train_names[cat_id] != name:
            at.error(
                "category-renamed",
                f"category {cat_id} is {name!r} here but {train_names[cat_id]!r} in {train.label}",
                fix,
                cat_id,
            )
