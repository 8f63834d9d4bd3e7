"""Photos with an EXIF orientation: every loader reads the pixels the annotations describe.

The quirk data set's images are made into tagged JPEGs both ways a labelling tool leaves them:
annotations on the stored pixels (the tool ignored the tag: the JSON has the stored size), and on
the upright view (the JSON has the turned size; the stored pixels are sideways). Whatever the
loader (OpenCV as in Ultralytics, PIL with exif_transpose, the torchvision backend's decoder,
Detectron2's read_image), it must see the annotated view, and a YOLO trial must run on it.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from known_outputs import WIDTH, class_of_level, write_quirky_coco, yolo_answer
from PIL import Image, ImageOps

from segtune.cocodata.evaluator import CocoEvaluator
from segtune.cocodata.prepare import prepare_dataset
from segtune.cocodata.results import ImageRecord, list_images
from segtune.core.errors import DataError
from segtune.trainers.yolo.layout import ULTRALYTICS_LAYOUT

ORIENTATION = 0x0112
# image id -> (EXIF orientation, which view the annotations describe); the others stay untagged PNGs
TAGGED = {
    "train": {0: (6, "stored"), 1: (8, "upright")},
    "val": {0: (6, "stored"), 1: (6, "upright"), 2: (3, "upright")},
}


def _tag(root: Path, split: str, image: dict, orientation: int, view: str) -> None:
    """Save the image as a tagged JPEG whose `view` is the annotated pixels."""
    source = root / "images" / split / image["file_name"]
    pixels = Image.open(source).convert("RGB")
    if view == "upright":  # store it so that applying the tag gives back the annotated pixels
        inverse = {3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}
        pixels = pixels.transpose(inverse[orientation])
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    image["file_name"] = Path(image["file_name"]).with_suffix(".jpg").name
    pixels.save(source.with_suffix(".jpg"), quality=95, exif=exif)
    source.unlink()


def _tagged_copy(root: Path) -> Path:
    data = write_quirky_coco(root)
    for split, tags in TAGGED.items():
        path = data / "annotations" / f"instances_{split}.json"
        coco = json.loads(path.read_text())
        for image in coco["images"]:
            if image["id"] in tags:
                _tag(data, split, image, *tags[image["id"]])
        path.write_text(json.dumps(coco))
    return data


def _annotated_view(path: Path, view: str) -> np.ndarray:
    """What the annotations describe, decoded from the user's file."""
    with Image.open(path) as image:
        return np.asarray((ImageOps.exif_transpose(image) if view == "upright" else image).convert("RGB"))


@pytest.fixture(scope="module")
def tagged(tmp_path_factory):
    root = tmp_path_factory.mktemp("exif")
    data = _tagged_copy(root / "boards")
    logs: list[str] = []
    prepared = prepare_dataset(data, cache_dir=root / "cache", layouts=(ULTRALYTICS_LAYOUT,), log=logs.append)
    return data, prepared, logs


def _loaders():
    import cv2
    from ultralytics.utils.patches import imread

    from segtune.trainers.maskrcnn.torchvision.data import decode_image

    def pil(record: ImageRecord) -> np.ndarray:
        with Image.open(record.path) as image:
            return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))

    yield "cv2.imread", lambda r: cv2.imread(str(r.path))[..., ::-1]
    yield "ultralytics imread", lambda r: imread(str(r.path))[..., ::-1]
    yield "PIL + exif_transpose", pil
    yield "torchvision decode_image", lambda r: decode_image(r).permute(1, 2, 0).numpy()
    if importlib.util.find_spec("detectron2") is not None:
        from detectron2.data.detection_utils import read_image

        yield "detectron2 read_image", lambda r: read_image(str(r.path), format="RGB")


def test_every_loader_reads_the_annotated_view(tagged):
    data, prepared, logs = tagged
    for split, tags in TAGGED.items():
        images_dir = prepared.train_images if split == "train" else prepared.val_images
        records = list_images(prepared.train_json if split == "train" else prepared.val_json, images_dir)
        for record in records:
            user_file = data / "images" / split / record.path.name
            orientation, view = tags.get(record.image_id, (1, "stored"))
            expected = _annotated_view(user_file, view)
            assert expected.shape == (record.height, record.width, 3)
            for name, load in _loaders():
                assert np.array_equal(load(record), expected), (split, record.image_id, name)
            if record.image_id in tags:
                with Image.open(record.path) as written:
                    assert written.getexif().get(ORIENTATION) is None and written.format == "PNG"
            else:  # untouched images are links to the user's files
                assert record.path.resolve() == user_file.resolve()
    assert prepared.val_images.parent.parent == prepared.val_json.parent  # the dataset entry's own folder
    assert prepared.val_images_source == data / "images" / "val"
    assert any("its JSON size is the stored pixels' (80x44): those pixels are used" in line for line in logs)
    assert any("its JSON size is the upright view's: the upright view is used" in line for line in logs)


def test_the_prepared_entry_is_reused(tagged, tmp_path):
    data, prepared, _ = tagged
    logs: list[str] = []
    again = prepare_dataset(
        data, cache_dir=prepared.train_json.parents[2], layouts=(ULTRALYTICS_LAYOUT,), log=logs.append
    )
    assert again == prepared and any(line.startswith("reusing prepared dataset") for line in logs)


def test_the_yolo_layout_links_the_annotated_view(tagged):
    import cv2

    data, prepared, _ = tagged
    layout = prepared.layout("ultralytics").parent
    for split, tags in TAGGED.items():
        for image_id, (_, view) in tags.items():
            name = f"{split}_{image_id:02d}.jpg"
            read = cv2.imread(str(layout / "images" / split / name))[..., ::-1]
            assert np.array_equal(read, _annotated_view(data / "images" / split / name, view)), (split, name)


def test_a_yolo_trial_trains_and_predicts_on_it(tagged, tmp_path, monkeypatch):
    """Before: Ultralytics read the stored-view image turned (44x80), and every trial failed on the
    evaluator's "RLE size [80, 44] differs from the image's [44, 80]". Training runs; then the
    trained model is replaced by known answers read off the pixels the predictor gets: they score
    100 only if those pixels are the annotated view."""
    from ultralytics.nn.tasks import SegmentationModel

    from segtune.trainers.base import TrialContext
    from segtune.trainers.yolo.adapter import YoloAdapter

    _, prepared, _ = tagged
    context = TrialContext(dataset=prepared, output_dir=tmp_path, max_epochs=1, device="cpu", max_detections=100)
    adapter = YoloAdapter({"imgsz": 4 * WIDTH, "batch": 4, "nbs": 4, "mosaic": 0.0}, context)
    epochs = []
    adapter.train(lambda epoch, native: epochs.append(epoch))
    assert epochs[0] == 1
    monkeypatch.setattr(SegmentationModel, "_predict_once", yolo_answer(class_of_level(prepared.category_ids)))
    metrics = CocoEvaluator(prepared.val_json).evaluate(adapter.predict_val())
    assert metrics["segm/AP"] == pytest.approx(100.0) and metrics["bbox/AP"] == pytest.approx(100.0), metrics


def test_sizes_that_fit_neither_view_are_one_error(tmp_path):
    data = _tagged_copy(tmp_path / "boards")
    path = data / "annotations" / "instances_val.json"
    coco = json.loads(path.read_text())
    coco["images"][0].update(width=80, height=80)
    path.write_text(json.dumps(coco))
    with pytest.raises(
        DataError,
        match=r"is 80x44 \(44x80 with its EXIF orientation 6 applied\) but the JSON "
        r"says 80x80; fix width/height",
    ):
        prepare_dataset(data, cache_dir=tmp_path / "cache", log=lambda _: None)
