"""The synthetic demo set: deterministic, several classes, real occlusion, valid COCO, dense on request."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from segtune.cocodata.synthetic import make_demo_dataset

# pycocotools' decode under numpy 2
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def tree_hash(root: Path) -> str:
    hasher = hashlib.blake2b()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        hasher.update(path.relative_to(root).as_posix().encode())
        hasher.update(path.read_bytes())
    return hasher.hexdigest()


def load(root: Path, split: str) -> dict:
    return json.loads((root / "annotations" / f"instances_{split}.json").read_text())


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synthetic") / "demo"
    return make_demo_dataset(root, n_train=24, n_val=6, image_size=96, seed=3)


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path, demo: Path) -> None:
    again = make_demo_dataset(tmp_path / "again", n_train=24, n_val=6, image_size=96, seed=3)
    assert tree_hash(again) == tree_hash(demo)
    other = make_demo_dataset(tmp_path / "other", n_train=24, n_val=6, image_size=96, seed=4)
    assert tree_hash(other) != tree_hash(demo)


def test_coco_layout_and_ids(demo: Path) -> None:
    for split, count in (("train", 24), ("val", 6)):
        coco = load(demo, split)
        assert [im["id"] for im in coco["images"]] == list(range(1, count + 1))
        assert [a["id"] for a in coco["annotations"]] == list(range(1, len(coco["annotations"]) + 1))
        for image in coco["images"]:
            with Image.open(demo / "images" / split / image["file_name"]) as im:
                assert im.size == (image["width"], image["height"]) == (96, 96)
    assert not list(demo.parent.glob(".demo.tmp-*")), "temporary build directory left behind"


def test_several_classes_and_occlusion(demo: Path) -> None:
    coco = load(demo, "train")
    per_class = Counter(a["category_id"] for a in coco["annotations"])
    assert set(per_class) == {1, 2, 3} and min(per_class.values()) >= 5
    assert {c["name"] for c in coco["categories"]} == {"circle", "rectangle", "triangle"}
    assert coco["info"]["occluded_objects"] > 0
    # an occluder that cuts an object in two leaves it with several polygons
    assert any(len(a["segmentation"]) > 1 for a in coco["annotations"])
    # several objects in one image overlap in their boxes but not in their (visible) masks
    by_image: dict[int, list[dict]] = {}
    for ann in coco["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    overlapping_boxes = 0
    for anns in by_image.values():
        masks = [mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(a["segmentation"], 96, 96))) for a in anns]
        total = np.sum(masks, axis=0) if masks else np.zeros((96, 96))
        assert total.max() <= 1, "visible masks of one image must not overlap"
        boxes = [a["bbox"] for a in anns]
        overlapping_boxes += sum(
            1
            for i, b in enumerate(boxes)
            for c in boxes[i + 1 :]
            if b[0] < c[0] + c[2] and c[0] < b[0] + b[2] and b[1] < c[1] + c[3] and c[1] < b[1] + b[3]
        )
    assert overlapping_boxes > 0


def test_area_and_bbox_come_from_the_mask(demo: Path) -> None:
    coco = load(demo, "val")
    for ann in coco["annotations"]:
        rle = mask_utils.merge(mask_utils.frPyObjects(ann["segmentation"], 96, 96))
        # polygons are traced so that pycocotools rasterises them back to the very pixels annotated
        assert int(mask_utils.area(rle)) == ann["area"]
        assert [int(v) for v in mask_utils.toBbox(rle)] == ann["bbox"]
        assert all(len(p) >= 6 for p in ann["segmentation"])


def test_dense_set_has_over_100_objects_per_image(tmp_path: Path) -> None:
    root = make_demo_dataset(tmp_path / "dense", n_train=1, n_val=2, image_size=128, objects_per_image=(120, 150))
    for split in ("train", "val"):
        per_image = Counter(a["image_id"] for a in load(root, split)["annotations"])
        assert min(per_image.values()) > 100


def test_reuse_and_refusal(tmp_path: Path) -> None:
    root = make_demo_dataset(tmp_path / "d", n_train=2, n_val=1, image_size=32)
    stamp = (root / "annotations" / "instances_train.json").stat().st_mtime_ns
    assert make_demo_dataset(root, n_train=2, n_val=1, image_size=32) == root
    assert (root / "annotations" / "instances_train.json").stat().st_mtime_ns == stamp
    with pytest.raises(FileExistsError):
        make_demo_dataset(root, n_train=3, n_val=1, image_size=32)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x.txt").write_text("user data")
    with pytest.raises(FileExistsError):
        make_demo_dataset(tmp_path / "busy")
