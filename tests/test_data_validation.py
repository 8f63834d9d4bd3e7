"""Validation: each broken input gives one DataError line naming problem, place and fix; warnings kept."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import SHARED_DATASET as SHARED
from conftest import edit_annotations as edit
from known_outputs import HEIGHT, WIDTH, write_quirky_coco
from PIL import Image

from segtune.cocodata.prepare import prepare_dataset
from segtune.core.errors import DataError
from segtune.core.record import PreparedDataset
from segtune.trainers.yolo.layout import ULTRALYTICS_LAYOUT

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def prepare(dataset: Path, tmp_path: Path, **kwargs: object) -> tuple[PreparedDataset, list[str]]:
    logs: list[str] = []
    prepared = prepare_dataset(dataset, cache_dir=tmp_path / "cache", log=logs.append, **kwargs)
    return prepared, logs


def fails(dataset: Path, tmp_path: Path) -> str:
    with pytest.raises(DataError) as info:
        prepare(dataset, tmp_path)
    message = str(info.value)
    assert "\n" not in message, "a DataError is one line"
    datasets = tmp_path / "cache" / "datasets"
    assert not datasets.exists() or not any(datasets.iterdir()), "nothing is written for invalid data"
    return message


def set_field(key: str, value: object, entry: str = "annotations", index: int = 0) -> Callable[[dict], None]:
    """An edit that sets one field of the first (or `index`-th) annotation (or image)."""
    return lambda coco: coco[entry][index].__setitem__(key, value)


ERRORS = {
    "short polygon": (
        set_field("segmentation", [[1, 1, 5, 5]]),
        "annotation 1 has a polygon with 2 points (a polygon needs >= 3)",
    ),
    "odd polygon": (set_field("segmentation", [[1, 1, 5, 5, 9]]), "not an even-length list"),
    "empty segmentation": (set_field("segmentation", []), "annotation 1 has an empty segmentation"),
    "unknown category": (set_field("category_id", 99), "category_id 99, which is not"),
    "unknown image": (set_field("image_id", 777), "refers to image 777"),
    "duplicate image ids": (set_field("id", 1, "images", 1), "image id 1 is used by more than one image"),
    "duplicate annotation ids": (set_field("id", 1, index=1), "annotation id 1 is used more than once"),
    "no annotations": (lambda c: c.__setitem__("annotations", []), "no annotations (nothing to train on)"),
    "size mismatch": (set_field("width", 100, "images"), "is 64x64 but the JSON says 100x64"),
    "bbox entirely outside": (set_field("bbox", [500, 500, 10, 10]), "entirely outside its 64x64 image"),
    "bbox without size": (set_field("bbox", [1, 1, 0, 5]), "non-positive size 0x5"),
    "bad RLE size": (set_field("segmentation", {"size": [10, 10], "counts": "abc"}), "RLE mask with size [10, 10]"),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_error_names_problem_place_and_fix(case: str, dataset: Path, tmp_path: Path) -> None:
    change, expected = ERRORS[case]
    edit(dataset, "train", change)
    message = fails(dataset, tmp_path)
    assert message.startswith("instances_train.json: ")
    assert expected in message
    assert "; " in message  # the fix follows the problem


def test_not_coco_json_and_broken_json(dataset: Path, tmp_path: Path) -> None:
    (dataset / "annotations" / "instances_train.json").write_text(json.dumps({"images": [], "info": {}}))
    message = fails(dataset, tmp_path)
    expected = "instances_train.json: is not a COCO instances file (no 'annotations', 'categories' list)"
    assert expected in message
    (dataset / "annotations" / "instances_val.json").write_text("{not json")
    with pytest.raises(DataError) as info:
        prepare(dataset, tmp_path)
    assert "instances_val.json: is not valid JSON" in " ".join(info.value.problems)


def test_missing_and_unreadable_image_files(dataset: Path, tmp_path: Path) -> None:
    (dataset / "images" / "val" / "000002.png").unlink()
    message = fails(dataset, tmp_path)
    assert message.startswith("instances_val.json: image 2 (000002.png) is missing: no file at ")
    (dataset / "images" / "val" / "000002.png").write_bytes(b"not an image at all")
    assert "image 2 (000002.png) is unreadable" in fails(dataset, tmp_path)


def test_first_offender_named_and_the_rest_counted(dataset: Path, tmp_path: Path) -> None:
    def break_three(coco: dict) -> None:
        for ann in coco["annotations"][2:5]:
            ann["segmentation"] = [[0, 0, 3, 3]]

    edit(dataset, "train", break_three)
    message = fails(dataset, tmp_path)
    assert message.startswith("instances_train.json: annotation 3 has a polygon with 2 points")
    assert message.endswith("(and 2 more like it: 4, 5)")


def test_all_problems_found_in_one_pass(dataset: Path, tmp_path: Path) -> None:
    edit(dataset, "train", set_field("segmentation", [[1, 1, 2, 2]]))
    edit(dataset, "val", lambda c: c["annotations"][0].__setitem__("category_id", 42))
    logs: list[str] = []
    with pytest.raises(DataError) as info:
        prepare_dataset(dataset, cache_dir=tmp_path / "cache", log=logs.append)
    assert len(info.value.problems) == 2
    assert "[1 more problem(s) listed above]" in str(info.value)
    assert sum(line.startswith("data error: ") for line in logs) == 2


def test_categories_must_agree_between_train_and_val(dataset: Path, tmp_path: Path) -> None:
    edit(dataset, "val", lambda c: c["categories"][0].__setitem__("name", "disc"))
    message = fails(dataset, tmp_path)
    assert "instances_val.json: category 1 is 'disc' here but 'circle' in instances_train.json" in message


def test_empty_category_and_background_images_warn(dataset: Path, tmp_path: Path) -> None:
    extra = {"id": 7, "name": "hexagon", "supercategory": "shape"}
    edit(dataset, "train", lambda c: c["categories"].append(extra))
    edit(dataset, "val", lambda c: c["categories"].append(extra))
    edit(dataset, "train", lambda c: c.__setitem__("annotations", [a for a in c["annotations"] if a["image_id"] != 2]))
    prepared, logs = prepare(dataset, tmp_path)
    empty = [w for w in prepared.warnings if "category 7 ('hexagon') has no annotations" in w]
    background = [w for w in prepared.warnings if "image 2 (000002.png) has no annotations" in w]
    assert len(empty) == 1 and len(background) == 1 and "background image" in background[0]
    assert 7 not in prepared.category_ids
    assert prepared.num_train_images == 12  # the background image is kept
    logged = [line for line in logs if line.startswith("data warning: ")]
    assert logged == [f"data warning: {w}" for w in prepared.warnings]
    # warnings are not repeated on a cache hit
    _, again = prepare(dataset, tmp_path)
    assert len(again) == 1 and again[0].startswith("reusing prepared dataset ")


def test_slightly_outside_box_warns_and_is_clipped(dataset: Path, tmp_path: Path) -> None:
    def widen(coco: dict) -> None:
        x, y, w, h = coco["annotations"][0]["bbox"]
        coco["annotations"][0]["bbox"] = [-3, y, x + w + 3, h]

    edit(dataset, "train", widen)
    prepared, _ = prepare(dataset, tmp_path)
    assert any("annotation 1 has box [-3," in w and "clipped" in w for w in prepared.warnings)
    ann = json.loads(prepared.train_json.read_text())["annotations"][0]
    assert ann["bbox"][0] == 0


def test_missing_area_iscrowd_bbox_are_filled_and_rle_is_accepted(dataset: Path, tmp_path: Path) -> None:
    from pycocotools import mask as mask_utils

    def strip(coco: dict) -> None:
        for key in ("area", "iscrowd", "bbox"):
            del coco["annotations"][0][key]
        crowd = coco["annotations"][1]
        rle = mask_utils.merge(mask_utils.frPyObjects(crowd["segmentation"], 64, 64))
        crowd["segmentation"] = {"size": rle["size"], "counts": rle["counts"].decode()}
        crowd["iscrowd"] = 1

    edit(dataset, "train", strip)
    prepared, _ = prepare(dataset, tmp_path)
    anns = {a["id"]: a for a in json.loads(prepared.train_json.read_text())["annotations"]}
    assert anns[1]["iscrowd"] == 0 and anns[1]["area"] > 0 and len(anns[1]["bbox"]) == 4
    assert anns[2]["iscrowd"] == 1 and isinstance(anns[2]["segmentation"], dict)


def test_exif_rotated_image_warns_by_name(dataset: Path, tmp_path: Path) -> None:
    source = dataset / "images" / "train" / "000001.png"
    with Image.open(source) as image:
        exif = Image.Exif()
        exif[0x0112] = 6
        image.convert("RGB").save(source.with_suffix(".jpg"), quality=95, exif=exif)
    source.unlink()
    edit(dataset, "train", lambda c: c["images"][0].__setitem__("file_name", "000001.jpg"))
    prepared, _ = prepare(dataset, tmp_path)
    assert any("image 000001.jpg carries EXIF orientation 6" in w for w in prepared.warnings)


def test_max_objects_per_image_is_recorded(dataset: Path, tmp_path: Path) -> None:
    prepared, _ = prepare(dataset, tmp_path)
    most = 0
    for path in (prepared.train_json, prepared.val_json):  # per split: both number their images from 1
        anns = json.loads(path.read_text())["annotations"]
        most = max(most, max(Counter(a["image_id"] for a in anns).values()))
    assert prepared.max_objects_per_image == most >= 1
    assert PreparedDataset.load(prepared.train_json.parent / "prepared.json") == prepared


def test_bad_arguments(dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such dataset folder"):
        prepare(tmp_path / "nowhere", tmp_path)
    shutil.rmtree(dataset / "annotations")
    with pytest.raises(DataError, match="no annotations/instances_train.json"):
        prepare(dataset, tmp_path)
    with pytest.raises(DataError, match="not both"):
        prepare_dataset(dataset, train_json=dataset / "x.json", cache_dir=tmp_path)
    with pytest.raises(DataError, match="val_fraction"):
        prepare_dataset(dataset, val_fraction=1.5, cache_dir=tmp_path)


def test_an_exports_quirks_are_warned_and_normalised(tmp_path: Path) -> None:
    """The shared dataset's quirks (below), on data made here: runs in a clone without ../shared."""
    data = write_quirky_coco(tmp_path / "boards")
    prepared, _ = prepare(data, tmp_path, layouts=(ULTRALYTICS_LAYOUT,))
    warnings = " | ".join(prepared.warnings)
    assert "category 0 ('boards') has no annotations" in warnings
    assert "annotation ids start at 0" in warnings
    assert f"partly outside its {WIDTH}x{HEIGHT} image; it is clipped to the image" in warnings
    assert prepared.category_ids == (1, 2, 3) and prepared.category_names == ("Arduino", "ESP8266", "Heltec")
    val = json.loads(prepared.val_json.read_text())
    assert min(im["id"] for im in val["images"]) == 0  # image ids are the originals
    assert min(a["id"] for a in val["annotations"]) == 1  # annotation ids shifted for pycocotools
    assert all(a["bbox"][0] + a["bbox"][2] <= WIDTH for a in val["annotations"])  # boxes clipped
    original = {
        a["id"] + 1: a["category_id"]
        for a in json.loads((data / "annotations" / "instances_val.json").read_text())["annotations"]
    }
    assert {a["id"]: a["category_id"] for a in val["annotations"]} == original  # category ids kept
    labels = prepared.layout("ultralytics").parent / "labels" / "val" / "val_00.txt"
    classes = sorted(int(line.split()[0]) for line in labels.read_text().splitlines())
    assert classes == [0, 1, 2]  # class index = position in category_ids: 1 -> 0, 2 -> 1, 3 -> 2


def test_shared_real_dataset_validates_with_its_quirks(tmp_path: Path) -> None:
    if not SHARED.is_dir():
        pytest.skip(f"shared dataset not found at {SHARED}")
    before = sorted((str(p), p.stat().st_mtime_ns) for p in SHARED.rglob("*"))
    prepared, _ = prepare(SHARED, tmp_path)  # used read-only: all output goes to the cache dir
    assert sorted((str(p), p.stat().st_mtime_ns) for p in SHARED.rglob("*")) == before
    warnings = " | ".join(prepared.warnings)
    assert "category 0 ('microcontroller') has no annotations" in warnings
    assert "annotation ids start at 0" in warnings
    assert "category 2 ('Arduino_Nano') has only 1 train and 0 val annotation(s)" in warnings
    assert prepared.category_ids == (1, 2, 3, 4, 5)
    assert prepared.category_names == ("Arduino", "Arduino_Nano", "ESP8266", "Heltec", "Raspberry")
    assert (prepared.num_train_images, prepared.num_val_images) == (120, 15)
    val = json.loads(prepared.val_json.read_text())
    assert min(im["id"] for im in val["images"]) == 0  # image ids are the originals
    assert min(a["id"] for a in val["annotations"]) == 1  # annotation ids shifted for pycocotools
