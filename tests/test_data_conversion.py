"""Conversion: seeded split, Ultralytics layout, class mapping, caching, YAML input and its round trip."""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from pathlib import Path

import pytest
import yaml
from conftest import SHARED_DATASET as SHARED
from conftest import edit_annotations as edit

from segtune.cocodata.prepare import DataLayout, demo_dir_name, prepare_dataset
from segtune.cocodata.split import split_image_ids
from segtune.core.errors import DataError
from segtune.core.record import PreparedDataset
from segtune.trainers.registry import dataset_readers
from segtune.trainers.yolo.layout import ULTRALYTICS_LAYOUT

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def prepare(
    data: Path | None, cache: Path, need_yolo: bool = True, **kwargs: object
) -> tuple[PreparedDataset, list[str]]:
    """prepare_dataset as the runner calls it for YOLO (need_yolo: with the Ultralytics layout) or
    for an adapter that needs no layout."""
    logs: list[str] = []
    kwargs.setdefault("layouts", (ULTRALYTICS_LAYOUT,) if need_yolo else ())
    return prepare_dataset(data, cache_dir=cache, log=logs.append, readers=dataset_readers(), **kwargs), logs


def yolo_yaml(prepared: PreparedDataset) -> Path | None:
    return prepared.layouts.get("ultralytics")


def read_labels(prepared: PreparedDataset, split: str) -> dict[str, list[tuple[int, list[float]]]]:
    """stem -> [(class, coordinates)], checking the format of every line on the way."""
    root = yolo_yaml(prepared).parent
    out = {}
    for path in sorted((root / "labels" / split).glob("*.txt")):
        rows = []
        for line in path.read_text().splitlines():
            cls, *coords = line.split()
            values = [float(v) for v in coords]
            assert cls.isdigit() and len(values) % 2 == 0 and len(values) >= 6
            assert all(0.0 <= v <= 1.0 for v in values)
            rows.append((int(cls), values))
        out[path.stem] = rows
    return out


def test_seeded_split_is_deterministic_disjoint_and_complete() -> None:
    coco = {
        "images": [{"id": i} for i in range(40)],
        "annotations": [{"image_id": i} for i in range(40) if i % 5],
    }  # 8 background images
    train, val = split_image_ids(coco, 0.1, seed=7)
    assert (train, val) == split_image_ids(coco, 0.1, seed=7)
    assert split_image_ids(coco, 0.1, seed=8)[1] != val
    assert len(val) == 4 and not set(train) & set(val) and sorted(train + val) == list(range(40))
    assert all(i % 5 for i in val), "val images are drawn from annotated images"
    small = {"images": coco["images"][:3], "annotations": coco["annotations"][:3]}
    assert len(split_image_ids(small, 0.1, 0)[1]) == 1  # at least one val image
    with pytest.raises(ValueError):
        split_image_ids({"images": [{"id": 1}], "annotations": [{"image_id": 1}]}, 0.1, 0)


def test_train_only_dataset_gets_a_seeded_val_split(dataset: Path, tmp_path: Path) -> None:
    (dataset / "annotations" / "instances_val.json").unlink()
    shutil.rmtree(dataset / "images" / "val")
    first, logs = prepare(dataset, tmp_path / "a", val_fraction=0.25, seed=3)
    second, _ = prepare(dataset, tmp_path / "b", val_fraction=0.25, seed=3)
    ids = [{im["id"] for im in json.loads(p.read_text())["images"]} for p in (first.train_json, first.val_json)]
    assert len(ids[1]) == 3 and not ids[0] & ids[1] and len(ids[0] | ids[1]) == 12
    assert json.loads(second.val_json.read_text()) == json.loads(first.val_json.read_text())
    assert first.val_images == first.train_images
    assert any("3 of 12 images drawn for val" in line for line in logs)
    other, _ = prepare(dataset, tmp_path / "a", val_fraction=0.25, seed=4)
    assert other.content_hash != first.content_hash  # split parameters are part of the key


def test_ultralytics_layout_labels_and_class_mapping(dataset: Path, tmp_path: Path) -> None:
    prepared, _ = prepare(dataset, tmp_path / "cache")
    root = yolo_yaml(prepared).parent
    spec = yaml.safe_load(yolo_yaml(prepared).read_text())
    assert spec == {
        "path": str(root),
        "train": "images/train",
        "val": "images/val",
        "names": {0: "circle", 1: "rectangle", 2: "triangle"},
    }
    assert Path(spec["path"]).is_absolute() and "download" not in spec
    for split in ("train", "val"):
        coco = json.loads((prepared.train_json if split == "train" else prepared.val_json).read_text())
        labels = read_labels(prepared, split)
        images = sorted((root / "images" / split).iterdir())
        assert len(images) == len(labels) == len(coco["images"])
        assert all(p.is_symlink() and p.resolve().is_file() for p in images)
        for image in coco["images"]:
            expected = Counter(a["category_id"] for a in coco["annotations"] if a["image_id"] == image["id"])
            got = Counter(prepared.category_ids[cls] for cls, _ in labels[Path(image["file_name"]).stem])
            assert got == expected  # one line per instance; class index maps back to the original id
    assert prepared.num_classes == 3 and prepared.category_ids == (1, 2, 3)


def test_non_contiguous_category_ids_are_mapped(dataset: Path, tmp_path: Path) -> None:
    remap = {1: 5, 2: 10, 3: 20}

    def change(coco: dict) -> None:
        coco["categories"] = [{"id": 0, "name": "shapes", "supercategory": "none"}] + [
            dict(c, id=remap[c["id"]]) for c in coco["categories"]
        ]
        for ann in coco["annotations"]:
            ann["category_id"] = remap[ann["category_id"]]

    edit(dataset, "train", change)
    edit(dataset, "val", change)
    prepared, _ = prepare(dataset, tmp_path / "cache")
    assert prepared.category_ids == (5, 10, 20)
    assert prepared.category_names == ("circle", "rectangle", "triangle")
    val = json.loads(prepared.val_json.read_text())
    assert {a["category_id"] for a in val["annotations"]} <= {5, 10, 20}  # evaluation keeps the original ids
    labels = read_labels(prepared, "val")
    first = val["annotations"][0]
    stem = Path(next(im["file_name"] for im in val["images"] if im["id"] == first["image_id"])).stem
    assert any(prepared.category_ids[cls] == first["category_id"] for cls, _ in labels[stem])


def test_split_instances_merge_into_one_label_line(dataset: Path, tmp_path: Path) -> None:
    prepared, _ = prepare(dataset, tmp_path / "cache")
    train = json.loads(prepared.train_json.read_text())
    multi = [a for a in train["annotations"] if len(a["segmentation"]) > 1]
    assert multi, "the synthetic set should have occluded objects cut in two"
    labels = read_labels(prepared, "train")
    image = next(im for im in train["images"] if im["id"] == multi[0]["image_id"])
    lines = labels[Path(image["file_name"]).stem]
    assert len(lines) == sum(a["image_id"] == image["id"] for a in train["annotations"])


def test_rle_masks_become_polygons_and_crowds_are_left_out(dataset: Path, tmp_path: Path) -> None:
    from pycocotools import mask as mask_utils

    def to_rle(coco: dict) -> None:
        first = coco["annotations"][0]
        same_image = [a for a in coco["annotations"] if a["image_id"] == first["image_id"]]
        for ann, crowd in zip(same_image, (0, 1)):
            rle = mask_utils.merge(mask_utils.frPyObjects(ann["segmentation"], 64, 64))
            ann["segmentation"] = {"size": rle["size"], "counts": rle["counts"].decode()}
            ann["iscrowd"] = crowd

    edit(dataset, "train", to_rle)
    prepared, _ = prepare(dataset, tmp_path / "cache")
    train = json.loads(prepared.train_json.read_text())
    first = train["annotations"][0]
    image = next(im for im in train["images"] if im["id"] == first["image_id"])
    lines = read_labels(prepared, "train")[Path(image["file_name"]).stem]
    expected = [a for a in train["annotations"] if a["image_id"] == image["id"] and not a["iscrowd"]]
    assert len(lines) == len(expected) and prepared.category_ids[lines[0][0]] == first["category_id"]


def test_cache_hit_reuses_the_directory_without_rebuilding(dataset: Path, tmp_path: Path) -> None:
    first, _ = prepare(dataset, tmp_path / "cache")
    stamp = (first.train_json.parent / "prepared.json").stat().st_mtime_ns
    second, logs = prepare(dataset, tmp_path / "cache")
    assert second == first
    assert logs == [f"reusing prepared dataset {first.train_json.parent}"]
    assert (first.train_json.parent / "prepared.json").stat().st_mtime_ns == stamp
    assert [p.name for p in (tmp_path / "cache" / "datasets").iterdir()] == [first.content_hash[:16]]


def test_a_crash_while_writing_leaves_nothing_behind(
    dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        prepare(dataset, tmp_path / "cache", layouts=(DataLayout("ultralytics", crash),))
    assert list((tmp_path / "cache" / "datasets").iterdir()) == []
    prepared, _ = prepare(dataset, tmp_path / "cache")
    assert yolo_yaml(prepared).is_file()
    assert oct(prepared.train_json.parent.stat().st_mode & 0o777) != oct(0o700)  # not mkdtemp's private mode


def test_changed_image_bytes_change_the_hash(dataset: Path, tmp_path: Path) -> None:
    first, _ = prepare(dataset, tmp_path / "cache", need_yolo=False)
    image = dataset / "images" / "train" / "000003.png"
    image.write_bytes(image.read_bytes() + b"\0")  # same pixels for PIL, different bytes
    second, _ = prepare(dataset, tmp_path / "cache", need_yolo=False)
    assert second.content_hash != first.content_hash


def test_yolo_layout_added_later_in_the_same_directory(dataset: Path, tmp_path: Path) -> None:
    plain, _ = prepare(dataset, tmp_path / "cache", need_yolo=False)
    assert yolo_yaml(plain) is None and not (plain.train_json.parent / "labels").exists()
    full, logs = prepare(dataset, tmp_path / "cache", need_yolo=True)
    assert full.content_hash == plain.content_hash and yolo_yaml(full) is not None and yolo_yaml(full).is_file()
    assert not any(line.startswith("reusing") for line in logs)
    assert not [p for p in (tmp_path / "cache" / "datasets").iterdir() if p.name.startswith(".")]


def test_default_is_the_embedded_demo_set(tmp_path: Path) -> None:
    prepared, _ = prepare(None, tmp_path)
    assert prepared.name == demo_dir_name() and (tmp_path / demo_dir_name() / "images" / "train").is_dir()
    assert (prepared.num_train_images, prepared.num_val_images, prepared.num_classes) == (64, 16, 3)
    again, logs = prepare(None, tmp_path)
    assert again == prepared and logs[0].startswith("reusing prepared dataset")


def test_explicit_paths(dataset: Path, tmp_path: Path) -> None:
    prepared, _ = prepare(
        None,
        tmp_path / "cache",
        need_yolo=False,
        train_json=dataset / "annotations" / "instances_train.json",
        train_images=dataset / "images" / "train",
    )
    assert prepared.num_train_images + prepared.num_val_images == 12  # no val given: split from train
    assert prepared.name == "data"


def test_valid_counts_as_val_and_test_is_ignored(dataset: Path, tmp_path: Path) -> None:
    annotations = dataset / "annotations"
    shutil.copy(annotations / "instances_val.json", annotations / "instances_test.json")
    shutil.copytree(dataset / "images" / "val", dataset / "images" / "test")
    (annotations / "instances_val.json").rename(annotations / "instances_valid.json")
    (dataset / "images" / "val").rename(dataset / "images" / "valid")
    prepared, _ = prepare(dataset, tmp_path / "cache", need_yolo=False)
    assert prepared.val_images == (dataset / "images" / "valid").resolve()
    assert (prepared.num_train_images, prepared.num_val_images) == (12, 4)


def test_yaml_round_trip_gives_equivalent_ground_truth(dataset: Path, tmp_path: Path) -> None:
    coco_side, _ = prepare(dataset, tmp_path / "cache")
    yolo_side, _ = prepare(yolo_yaml(coco_side), tmp_path / "cache2")
    spec = yaml.safe_load(yolo_yaml(yolo_side).read_text())
    assert "download" not in spec and Path(spec["train"]).is_absolute()
    assert yolo_side.category_names == coco_side.category_names
    pairs = ((coco_side.train_json, yolo_side.train_json), (coco_side.val_json, yolo_side.val_json))
    for a_json, b_json in pairs:
        a, b = json.loads(a_json.read_text()), json.loads(b_json.read_text())
        assert len(a["images"]) == len(b["images"]) and len(a["annotations"]) == len(b["annotations"])
        for image_a in a["images"]:
            stem = Path(image_a["file_name"]).stem
            image_b = next(im for im in b["images"] if Path(im["file_name"]).stem == stem)
            assert (image_a["width"], image_a["height"]) == (image_b["width"], image_b["height"])
            objects_a = sorted(
                (coco_side.category_ids.index(x["category_id"]), x["bbox"], x["area"])
                for x in a["annotations"]
                if x["image_id"] == image_a["id"]
            )
            objects_b = sorted(
                (x["category_id"], x["bbox"], x["area"]) for x in b["annotations"] if x["image_id"] == image_b["id"]
            )
            assert len(objects_a) == len(objects_b)
            for (cls_a, box_a, area_a), (cls_b, box_b, area_b) in zip(objects_a, objects_b):
                assert cls_a == cls_b
                assert max(abs(u - v) for u, v in zip(box_a, box_b)) <= 1.0
                assert abs(area_a - area_b) <= max(4.0, 0.05 * area_a)


def write_yaml(root: Path, **spec: object) -> Path:
    path = root / "data.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_yaml_input_is_rewritten_and_checked(dataset: Path, tmp_path: Path) -> None:
    coco_side, _ = prepare(dataset, tmp_path / "cache")
    yolo_root = yolo_yaml(coco_side).parent
    user = Path(shutil.copytree(yolo_root, tmp_path / "user", symlinks=True, ignore=shutil.ignore_patterns("*.json")))
    path = write_yaml(
        user,
        path=".",
        train="images/train",
        val="images/val",
        names=["circle", "rectangle", "triangle"],
        download="https://example.com/data.zip",
    )
    prepared, _ = prepare(path, tmp_path / "cache3", need_yolo=False)
    spec = yaml.safe_load(yolo_yaml(prepared).read_text())
    assert "download" not in spec and spec["path"] == str(user.resolve())
    assert prepared.category_ids == (0, 1, 2)

    label = next((user / "labels" / "train").glob("*.txt"))
    label.write_text("0 0.5 0.5 0.2 0.2\n")
    with pytest.raises(DataError, match=r"is a box \(class cx cy w h\), not a polygon"):
        prepare(path, tmp_path / "cache3")
    label.write_text("7 0.1 0.1 0.2 0.1 0.2 0.2\n")
    with pytest.raises(DataError, match="has class 7, but names lists 3 classes"):
        prepare(path, tmp_path / "cache3")
    write_yaml(user, path=".", train="images/train", names=["a"])
    with pytest.raises(DataError, match="has no 'val' entry"):
        prepare(path, tmp_path / "cache3")


def test_shared_real_dataset_converts(tmp_path: Path) -> None:
    if not SHARED.is_dir():
        pytest.skip(f"shared dataset not found at {SHARED}")
    prepared, _ = prepare(SHARED, tmp_path / "cache")
    labels = read_labels(prepared, "train")
    assert len(labels) == 120 and sum(len(rows) for rows in labels.values()) == 144
    assert {cls for rows in labels.values() for cls, _ in rows} == {0, 1, 2, 3, 4}
    assert len(read_labels(prepared, "val")) == 15
    link = next((yolo_yaml(prepared).parent / "images" / "val").iterdir())
    assert os.path.realpath(link).startswith(os.path.realpath(SHARED))  # linked, not copied
    again, logs = prepare(SHARED, tmp_path / "cache")
    assert again == prepared and logs[0].startswith("reusing prepared dataset")
