"""Dense scenes (hundreds of objects per image) are not capped anywhere: the detection limit has
headroom above the densest image, the evaluator counts that many, and every backend proposes and
keeps at least that many detections."""

from __future__ import annotations

import importlib.util
import json
from types import SimpleNamespace

import pytest
from known_outputs import class_of_level, write_dense_coco, yolo_answer

from segtune.cocodata.evaluator import CocoEvaluator
from segtune.cocodata.ground_truth import detection_limit
from segtune.cocodata.prepare import prepare_dataset
from segtune.trainers.base import TrialContext

HAS_DETECTRON2 = importlib.util.find_spec("detectron2") is not None
OBJECTS = 18 * 18  # in the one val image of write_dense_coco


@pytest.fixture(scope="module")
def dense(tmp_path_factory):
    root = tmp_path_factory.mktemp("dense")
    return prepare_dataset(write_dense_coco(root / "scene"), cache_dir=root / "cache", log=lambda _: None)


def _context(prepared, tmp_path, **kw) -> TrialContext:
    # The limit every trial gets: runners/tune.py takes it from the evaluator of the val split.
    return TrialContext(
        dataset=prepared,
        output_dir=tmp_path,
        max_epochs=1,
        device="cpu",
        max_detections=CocoEvaluator(prepared.val_json).max_dets,
        **kw,
    )


def test_detection_limit_is_cocos_100_or_twice_the_densest_image():
    assert [detection_limit(n) for n in (0, 3, 50, 51, OBJECTS)] == [100, 100, 100, 102, 2 * OBJECTS]


def test_evaluator_counts_false_positives_ranked_above_every_object(dense):
    """100 false positives scored above all 324 objects: with a limit of exactly 324 the last 100
    objects would fall off the list (AP about 48); with headroom all are counted (AP 76)."""
    gt = json.loads(dense.val_json.read_text())
    predictions = [
        {"image_id": 1, "category_id": 1, "score": 0.5, "bbox": a["bbox"], "segmentation": a["segmentation"]}
        for a in gt["annotations"]
    ]
    for k in range(100):  # 2 x 2 squares in the gaps between the objects
        x, y = 7 + 8 * (k % 17), 7 + 8 * (k // 17)
        predictions.append(
            {
                "image_id": 1,
                "category_id": 1,
                "score": 0.9,
                "bbox": [x, y, 2, 2],
                "segmentation": [[x, y, x + 2, y, x + 2, y + 2, x, y + 2]],
            }
        )
    evaluator = CocoEvaluator(gt)
    assert evaluator.max_dets == 2 * OBJECTS
    metrics = evaluator.evaluate(predictions)
    assert metrics["segm/AP"] == pytest.approx(100 * OBJECTS / (OBJECTS + 100), abs=0.5)
    assert metrics["bbox/AP"] == pytest.approx(100 * OBJECTS / (OBJECTS + 100), abs=0.5)


def test_yolo_keeps_every_object_of_a_dense_image(dense, tmp_path, monkeypatch):
    """Each object is answered twice: rightly, and as another class scored higher. Ultralytics' NMS
    keeps max_det detections: without headroom only the wrong ones would survive (AP 0)."""
    from ultralytics.nn.tasks import SegmentationModel

    from segtune.trainers.yolo.adapter import YoloAdapter

    adapter = YoloAdapter({"imgsz": 4 * 144}, _context(dense, tmp_path))
    model = SegmentationModel("yolo11n-seg.yaml", nc=dense.num_classes, verbose=False).eval()
    adapter._trainer = SimpleNamespace(ema=None, model=model, args=SimpleNamespace(imgsz=4 * 144, device="cpu"))
    levels = class_of_level(dense.category_ids)
    monkeypatch.setattr(SegmentationModel, "_predict_once", yolo_answer(levels, decoy_class=1))
    predictions = adapter.predict_val()
    assert len(predictions) == 2 * OBJECTS
    metrics = CocoEvaluator(dense.val_json).evaluate(predictions)
    assert metrics["segm/AP"] == pytest.approx(100.0) and metrics["bbox/AP"] == pytest.approx(100.0)


def test_torchvision_models_propose_at_least_the_detection_limit(dense, tmp_path):
    from segtune.trainers.maskrcnn.params import validate_params
    from segtune.trainers.maskrcnn.torchvision import models as tvm
    from segtune.trainers.maskrcnn.torchvision.adapter import TorchvisionMaskRCNN

    limit = 2 * OBJECTS
    for name in tvm.MODELS:
        kw = tvm.model_kwargs(name, validate_params({}), num_classes=3, max_detections=limit)
        assert kw["box_detections_per_img"] == limit
        assert kw["rpn_pre_nms_top_n_test"] >= kw["rpn_post_nms_top_n_test"] >= limit, (name, kw)
    adapter = TorchvisionMaskRCNN({}, _context(dense, tmp_path, model="maskrcnn_resnet18_fpn"))
    adapter._build(load_weights=False)
    model = adapter.model.eval()
    assert model.roi_heads.detections_per_img == limit
    assert model.rpn.pre_nms_top_n() >= model.rpn.post_nms_top_n() >= limit


@pytest.mark.skipif(not HAS_DETECTRON2, reason="detectron2 is not installed (not on PyPI; build it from source)")
@pytest.mark.parametrize("model", ["segtune/mask_rcnn_R_18_FPN_small", "Misc/scratch_mask_rcnn_R_50_FPN_3x_gn.yaml"])
def test_detectron2_config_proposes_at_least_the_detection_limit(dense, tmp_path, model):
    from segtune.trainers.maskrcnn.detectron2.config import build_cfg

    limit = 2 * OBJECTS
    for params in ({}, {"MODEL.RPN.POST_NMS_TOPK_TEST": 50}):  # a searched value below the limit is raised
        cfg = build_cfg(params, _context(dense, tmp_path, model=model), train_dataset="unused", weights="").cfg
        assert cfg.TEST.DETECTIONS_PER_IMAGE == limit
        assert cfg.MODEL.RPN.PRE_NMS_TOPK_TEST >= cfg.MODEL.RPN.POST_NMS_TOPK_TEST >= limit
