"""Each adapter's prediction path scores a known answer at 100 AP, and a wrong one far below.

The network is replaced by one that reads the objects off the pixels it is given
(`known_outputs.instances_from_grey`) and answers in the framework's own raw format: Ultralytics'
(boxes, class scores, mask coefficients, prototypes at 1/4 of the letterboxed input), torchvision's
and Detectron2's RoI-head outputs on the resized, normalised, padded batch. Everything after the
network is the real thing: the framework's post-processing (NMS, scaling back to the image,
pasting masks), the adapter's conversion to COCO results and class ids, and the one evaluator.
A mirrored mask, a wrong scale back to the image or a class permutation anywhere on that path
shows up as a lost AP: `mutate` makes each of those mistakes on purpose.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import pytest
from known_outputs import (
    HEIGHT,
    MUTATIONS,
    WIDTH,
    class_of_level,
    detectron2_answer,
    torchvision_answer,
    write_quirky_coco,
    yolo_answer,
)

from segtune.cocodata.evaluator import CocoEvaluator
from segtune.cocodata.prepare import prepare_dataset
from segtune.trainers.base import TrialContext

HAS_DETECTRON2 = importlib.util.find_spec("detectron2") is not None
YOLO_IMGSZ = 4 * WIDTH  # 4x: prototypes (1/4) at the image's resolution
TEST_SIZE = {"INPUT.MIN_SIZE_TEST": 2 * HEIGHT, "INPUT.MAX_SIZE_TEST": 160}  # resized 2x before the network


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    root = tmp_path_factory.mktemp("quirky")
    data = write_quirky_coco(root / "boards")
    return prepare_dataset(data, cache_dir=root / "cache", log=lambda _: None)


@pytest.fixture(scope="module")
def evaluator(prepared) -> CocoEvaluator:
    return CocoEvaluator(prepared.val_json)


def _context(prepared, tmp_path: Path, **kw) -> TrialContext:
    return TrialContext(dataset=prepared, output_dir=tmp_path, max_epochs=1, device="cpu", **kw)


def _check(evaluator: CocoEvaluator, predictions: list[dict], mutate: str | None, *, exact_masks: bool = True) -> None:
    """100 AP for the right answer; under 30 for a mutated one.

    exact_masks=False: torchvision pastes RoI masks with its legacy box rounding (a pixel at the
    edges), so on these 14-20 px objects a perfect RoI answer reaches every IoU threshold up to
    0.75, but not all up to 0.95 (segm/AP about 82).
    """
    metrics = evaluator.evaluate(predictions)
    if mutate is None:
        for key in ("segm/AP50", "segm/AP75", "bbox/AP", "bbox/AP50", "bbox/AP75"):
            assert metrics[key] == pytest.approx(100.0), (key, metrics)
        assert metrics["segm/AP"] == pytest.approx(100.0) if exact_masks else metrics["segm/AP"] > 75, metrics
    else:
        assert metrics["segm/AP"] < 30 and metrics["bbox/AP"] < 30, (mutate, metrics)


def test_the_class_order_leaves_the_placeholder_out(prepared):
    assert prepared.category_ids == (1, 2, 3)  # category 0 has no annotations: no class index


# ---- YOLO -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mutate", (None, *MUTATIONS))
def test_yolo_prediction_path(prepared, evaluator, tmp_path, monkeypatch, mutate):
    from ultralytics.nn.tasks import SegmentationModel

    from segtune.trainers.yolo.adapter import YoloAdapter

    adapter = YoloAdapter({"imgsz": YOLO_IMGSZ}, _context(prepared, tmp_path))
    model = SegmentationModel("yolo11n-seg.yaml", nc=prepared.num_classes, verbose=False).eval()
    adapter._trainer = SimpleNamespace(ema=None, model=model, args=SimpleNamespace(imgsz=YOLO_IMGSZ, device="cpu"))
    monkeypatch.setattr(SegmentationModel, "_predict_once", yolo_answer(class_of_level(prepared.category_ids), mutate))
    _check(evaluator, adapter.predict_val(), mutate)


@pytest.mark.parametrize("mutate", (None, *MUTATIONS))
def test_torchvision_prediction_path(prepared, evaluator, tmp_path, mutate):
    from segtune.trainers.maskrcnn.torchvision.adapter import TorchvisionMaskRCNN

    adapter = TorchvisionMaskRCNN(TEST_SIZE, _context(prepared, tmp_path, model="maskrcnn_resnet18_fpn"))
    adapter._build(load_weights=False)
    torchvision_answer(adapter.model, class_of_level(prepared.category_ids), mutate)
    _check(evaluator, adapter.predict_val(), mutate, exact_masks=False)


@pytest.mark.skipif(not HAS_DETECTRON2, reason="detectron2 is not installed (not on PyPI; build it from source)")
@pytest.mark.parametrize("mutate", (None, *MUTATIONS))
def test_detectron2_prediction_path(prepared, evaluator, tmp_path, mutate):
    from detectron2.modeling import build_model

    from segtune.trainers.maskrcnn.detectron2.adapter import Detectron2MaskRCNN
    from segtune.trainers.maskrcnn.detectron2.config import build_cfg

    adapter = Detectron2MaskRCNN(TEST_SIZE, _context(prepared, tmp_path))
    adapter._cfg = build_cfg(adapter.params, adapter.context, train_dataset="unused", weights="").cfg
    model = build_model(adapter._cfg).eval()
    adapter._trainer = SimpleNamespace(model=model)
    detectron2_answer(model, class_of_level(prepared.category_ids), mutate)
    _check(evaluator, adapter.predict_val(), mutate)
