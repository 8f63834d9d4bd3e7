"""A deterministic synthetic instance-segmentation set: coloured shapes on textured backgrounds.

It is the embedded default dataset (so a first run needs nothing but the package) and the test
fixture. Later shapes partly cover earlier ones; what is annotated is each object's *visible* mask.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from segtune.cocodata.masks import mask_to_polygons

GENERATOR_VERSION = 1
CATEGORIES = (
    {"id": 1, "name": "circle", "supercategory": "shape"},
    {"id": 2, "name": "rectangle", "supercategory": "shape"},
    {"id": 3, "name": "triangle", "supercategory": "shape"},
)
PALETTE = (  # BGR; saturated colours that stand out from the muted backgrounds
    (40, 40, 220),
    (60, 180, 40),
    (220, 80, 40),
    (40, 200, 230),
    (200, 60, 200),
    (200, 200, 40),
    (30, 140, 240),
    (245, 245, 245),
    (25, 25, 25),
)
MIN_VISIBLE_PX = 12  # an object must keep at least this much visible area ...
MIN_PART_PX = 4  # ... and every visible fragment at least this much, or the placement is redrawn
PLACEMENT_TRIES = 40
MARKER = "segtune-demo.json"


def make_demo_dataset(
    root: Path,
    *,
    n_train: int = 64,
    n_val: int = 16,
    image_size: int = 128,
    seed: int = 0,
    objects_per_image: tuple[int, int] = (1, 3),
) -> Path:
    """Write a COCO-layout dataset into `root` (images/{train,val}, annotations/instances_*.json).

    Identical bytes for identical arguments. When `root` already holds the set made with the same
    arguments it is reused; the set is built in a temporary sibling and moved into place, so an
    interrupted run never leaves a half-written dataset behind.
    """
    import cv2  # noqa: F401  (fail early, before any directory is made)

    root = Path(root)
    lo, hi = objects_per_image
    if not (0 <= lo <= hi) or n_train < 1 or n_val < 1 or image_size < 16:
        raise ValueError(
            "make_demo_dataset: need n_train, n_val >= 1, image_size >= 16 and 0 <= min <= max objects; "
            f"got n_train={n_train}, n_val={n_val}, image_size={image_size}, "
            f"objects_per_image={objects_per_image}"
        )
    params = {
        "version": GENERATOR_VERSION,
        "n_train": n_train,
        "n_val": n_val,
        "image_size": image_size,
        "seed": seed,
        "objects_per_image": [lo, hi],
    }
    marker = root / MARKER
    if marker.is_file():
        if json.loads(marker.read_text()) == params:
            return root
        raise FileExistsError(
            f"{root} holds a demo dataset made with other parameters ({marker}); use another directory"
        )
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f"{root} exists and is not empty; make_demo_dataset writes only into a new directory")

    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; the dataset is an ordinary shared directory
        for split_index, (split, count) in enumerate((("train", n_train), ("val", n_val))):
            coco = _make_split(tmp, split, split_index, count, image_size, seed, (lo, hi), params)
            (tmp / "annotations").mkdir(exist_ok=True)
            (tmp / "annotations" / f"instances_{split}.json").write_text(json.dumps(coco, indent=1))
        marker_tmp = tmp / MARKER
        marker_tmp.write_text(json.dumps(params))
        try:
            os.replace(tmp, root)  # atomic; replaces only an empty directory
        except OSError:
            if (root / MARKER).is_file() and json.loads((root / MARKER).read_text()) == params:
                return root  # another process finished the same set first
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def _make_split(
    out: Path,
    split: str,
    split_index: int,
    count: int,
    size: int,
    seed: int,
    objects: tuple[int, int],
    params: dict[str, Any],
) -> dict[str, Any]:
    import cv2

    image_dir = out / "images" / split
    image_dir.mkdir(parents=True)
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    occluded = 0
    for index in range(count):
        # One generator per image: image i does not change when the set is made larger.
        rng = np.random.default_rng([seed, split_index, index])
        image, objects_ = _render_image(rng, size, int(rng.integers(objects[0], objects[1] + 1)))
        image_id = index + 1
        file_name = f"{image_id:06d}.png"
        ok, encoded = cv2.imencode(".png", image)
        assert ok, "cv2 could not encode a PNG"
        (image_dir / file_name).write_bytes(encoded.tobytes())
        images.append({"id": image_id, "file_name": file_name, "width": size, "height": size})
        for category_id, visible, full_area in objects_:
            occluded += int(visible.sum()) < full_area
            annotations.append(_annotation(len(annotations) + 1, image_id, category_id, visible))
    return {
        "info": {
            "description": "segtune synthetic demo shapes",
            "split": split,
            "params": params,
            "occluded_objects": occluded,
        },
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": [dict(c) for c in CATEGORIES],
    }


def _annotation(ann_id: int, image_id: int, category_id: int, visible: np.ndarray) -> dict[str, Any]:
    ys, xs = np.nonzero(visible)
    x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": category_id,
        "segmentation": mask_to_polygons(visible),
        "area": int(visible.sum()),
        "bbox": [x0, y0, x1 - x0 + 1, y1 - y0 + 1],  # pixel edges: pixel x spans [x, x + 1)
        "iscrowd": 0,
    }


def _render_image(
    rng: np.random.Generator, size: int, n_objects: int
) -> tuple[np.ndarray, list[tuple[int, np.ndarray, int]]]:
    """Paint shapes one over another; return the image and (category, visible mask, full area) per object."""
    image = _background(rng, size)
    owner = np.full((size, size), -1, np.int32)  # index of the object visible at each pixel
    # per placed shape: category, full mask, bounds, palette index
    shapes: list[tuple[int, np.ndarray, tuple[int, int, int, int], int]] = []
    scale = size * min(0.3, max(0.035, 0.42 / math.sqrt(max(n_objects, 1))))
    for _ in range(n_objects):
        for _attempt in range(PLACEMENT_TRIES):
            category_id, mask = _random_shape(rng, size, scale)
            if mask.sum() < MIN_VISIBLE_PX:
                continue
            candidate = owner.copy()
            candidate[mask] = len(shapes)
            covered = np.unique(owner[mask])
            if all(_visible_ok(candidate, int(j), shapes[j][2]) for j in covered if j >= 0):
                owner = candidate
                # A colour unlike those it covers, so an occluded object's edge stays visible.
                taken = {shapes[j][3] for j in covered if j >= 0}
                free = [c for c in range(len(PALETTE)) if c not in taken] or list(range(len(PALETTE)))
                shapes.append((category_id, mask, _bounds(mask), free[int(rng.integers(len(free)))]))
                break
    objects = []
    for index, (category_id, mask, _, palette_index) in enumerate(shapes):
        colour = np.array(PALETTE[palette_index], np.int16) + rng.integers(-25, 26, 3)
        image[owner == index] = np.clip(colour, 0, 255)
        objects.append((category_id, owner == index, int(mask.sum())))
    # Fine grain over everything, so objects are textured too and flat colour is no give-away.
    noise = rng.normal(0.0, 5.0, image.shape)
    return np.clip(image.astype(np.float64) + noise, 0, 255).astype(np.uint8), objects


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    import cv2

    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) / max(size - 1, 1)
    angle = rng.uniform(0.0, 2.0 * math.pi)
    ramp = math.cos(angle) * xx + math.sin(angle) * yy
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-9)
    start, end = rng.integers(60, 200, size=(2, 3))
    image = start + (end - start) * ramp[..., None]
    cells = int(rng.integers(3, 8))
    blotches = rng.normal(0.0, 20.0, size=(cells, cells, 3)).astype(np.float32)
    image += cv2.resize(blotches, (size, size), interpolation=cv2.INTER_CUBIC)
    return np.clip(image, 0, 255).astype(np.uint8)


def _random_shape(rng: np.random.Generator, size: int, scale: float) -> tuple[int, np.ndarray]:
    import cv2

    mask = np.zeros((size, size), np.uint8)
    category_id = int(rng.integers(1, len(CATEGORIES) + 1))
    radius = max(3.0, scale * rng.uniform(0.55, 1.0))
    cx, cy = rng.uniform(0, size, 2)
    if category_id == 1:
        cv2.circle(mask, (int(cx), int(cy)), int(round(radius)), 1, -1)
    elif category_id == 2:
        w, h = radius * rng.uniform(1.1, 2.0, 2)
        box = cv2.boxPoints(((float(cx), float(cy)), (float(w), float(h)), float(rng.uniform(0, 90))))
        cv2.fillPoly(mask, [np.round(box).astype(np.int32)], 1)
    else:
        angles = rng.uniform(0, 2 * math.pi) + np.array([0.0, 2.1, 4.2]) + rng.uniform(-0.3, 0.3, 3)
        radii = radius * rng.uniform(0.9, 1.25, 3)
        points = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], axis=1)
        cv2.fillPoly(mask, [np.round(points).astype(np.int32)], 1)
    return category_id, mask.astype(bool)


def _bounds(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1


def _visible_ok(owner: np.ndarray, index: int, bounds: tuple[int, int, int, int]) -> bool:
    """Still enough of object `index` visible, in fragments big enough to annotate, and no holes.

    Holes are refused because COCO polygons cannot express them: a shape fully inside another
    would otherwise be annotated as part of it.
    """
    import cv2

    y0, y1, x0, x1 = bounds
    visible = (owner[y0:y1, x0:x1] == index).astype(np.uint8)
    if int(visible.sum()) < MIN_VISIBLE_PX:
        return False
    n, _, stats, _ = cv2.connectedComponentsWithStats(visible, connectivity=8)
    if n > 1 and int(stats[1:, cv2.CC_STAT_AREA].min()) < MIN_PART_PX:
        return False
    _, hierarchy = cv2.findContours(np.pad(visible, 1), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    return hierarchy is None or bool((hierarchy[0][:, 3] < 0).all())
