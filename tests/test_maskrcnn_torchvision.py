"""The torchvision Mask R-CNN adapter and the shared Mask R-CNN vocabulary (fast: the small model, 96 px)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from segtune.cocodata.evaluator import CocoEvaluator
from segtune.cocodata.prepare import prepare_dataset
from segtune.cocodata.synthetic import make_demo_dataset
from segtune.core.errors import ConfigError
from segtune.trainers.base import TrainingDiverged, TrialContext
from segtune.trainers.maskrcnn.params import (
    PARAM_NAMES,
    defaults,
    lr_multiplier,
    steps_in_iterations,
    validate_params,
)
from segtune.trainers.maskrcnn.torchvision import models as tvm
from segtune.trainers.maskrcnn.torchvision.adapter import TorchvisionMaskRCNN
from segtune.trainers.registry import get_adapter

SMALL = "maskrcnn_resnet18_fpn"
PARAMS = {
    "SOLVER.BASE_LR": 0.01,
    "SOLVER.IMS_PER_BATCH": 4,
    "SOLVER.WARMUP_ITERS": 4,
    "SOLVER.WARMUP_FACTOR": 0.1,
    "SOLVER.STEPS": [0.8],
    "SOLVER.CLIP_GRADIENTS.ENABLED": True,
    "SOLVER.CLIP_GRADIENTS.CLIP_TYPE": "norm",
    "SOLVER.CLIP_GRADIENTS.CLIP_VALUE": 10.0,
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE": 64,
    "INPUT.MIN_SIZE_TRAIN": [80, 96],
    "INPUT.MAX_SIZE_TRAIN": 160,
    "INPUT.MIN_SIZE_TEST": 96,
    "INPUT.MAX_SIZE_TEST": 160,
    "SEED": 3,
}


class _Stop(Exception):
    """Ends a run from inside the callback, as a stopped or pre-empted trial does."""


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread: on a busy 2-core machine two OpenMP threads per process thrash (measured 5-10x
    slower with other jobs running); on an idle one this costs under 2x."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("maskrcnn-data")
    # objects_per_image from 0: a third of the train images have no annotation (negatives must train)
    data = make_demo_dataset(root / "demo", n_train=12, n_val=4, image_size=96, seed=1, objects_per_image=(0, 3))
    prepared = prepare_dataset(data, cache_dir=root / "cache", log=lambda _: None)
    train = json.loads(Path(prepared.train_json).read_text())
    assert len({a["image_id"] for a in train["annotations"]}) < len(train["images"])
    return prepared


def _context(dataset, tmp_path: Path, max_epochs: int = 3, iters_per_epoch: int | None = None) -> TrialContext:
    options = {"iters_per_epoch": iters_per_epoch} if iters_per_epoch else {}
    return TrialContext(
        dataset=dataset, output_dir=tmp_path, max_epochs=max_epochs, device="cpu", model=SMALL, options=options
    )


@pytest.fixture(scope="module")
def first_run(dataset, tmp_path_factory):
    """3-epoch trial stopped after epoch 2: what its callback saw, its predictions, its checkpoint."""
    out = tmp_path_factory.mktemp("run-a")
    adapter = TorchvisionMaskRCNN(PARAMS, _context(dataset, out))
    seen: list[tuple[int, dict]] = []
    result: dict = {"checkpoint": out / "ckpt"}

    def on_epoch_end(epoch, native):
        seen.append((epoch, dict(native)))
        if epoch == 2:
            result["predictions"] = adapter.predict_val()
            result["training_after_predict"] = adapter.model.training
            adapter.save_checkpoint(result["checkpoint"])
            raise _Stop

    with pytest.raises(_Stop):
        adapter.train(on_epoch_end)
    result["seen"] = seen
    result["adapter"] = adapter
    return result


# ---- the vocabulary ------------------------------------------------------------------------------
def test_validate_fills_detectron2_defaults_and_casts_numpy():
    out = validate_params(
        {
            "SOLVER.BASE_LR": np.float64(0.02),
            "SOLVER.IMS_PER_BATCH": np.int64(8),
            "SOLVER.CLIP_GRADIENTS.ENABLED": np.bool_(True),
            "SOLVER.OPTIMIZER": "adamw",
            "INPUT.MIN_SIZE_TRAIN": 640,
            "SOLVER.STEPS": (0.6, 0.9),
        }
    )
    assert set(out) == PARAM_NAMES
    assert type(out["SOLVER.BASE_LR"]) is float and type(out["SOLVER.IMS_PER_BATCH"]) is int
    assert out["SOLVER.CLIP_GRADIENTS.ENABLED"] is True and out["SOLVER.OPTIMIZER"] == "AdamW"
    assert out["INPUT.MIN_SIZE_TRAIN"] == [640] and out["SOLVER.STEPS"] == [0.6, 0.9]
    d = defaults()
    assert d["SOLVER.WEIGHT_DECAY"] == 1e-4 and d["SOLVER.WARMUP_ITERS"] == 1000 and d["SOLVER.GAMMA"] == 0.1
    assert d["MODEL.ANCHOR_GENERATOR.SIZES"] == [[32], [64], [128], [256], [512]]
    json.dumps(out)
    # a single anchor list is broadcast to every FPN level, as Detectron2 does; JSON strings are lists
    out = validate_params({"MODEL.ANCHOR_GENERATOR.SIZES": [[16, 32]], "SOLVER.STEPS": "[0.5]"})
    assert out["MODEL.ANCHOR_GENERATOR.SIZES"] == [[16, 32]] * 5 and out["SOLVER.STEPS"] == [0.5]


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("SOLVER.BASE_LR", "fast", "a float > 0"),
        ("SOLVER.BASE_LR", -0.1, "a float > 0"),
        ("SOLVER.IMS_PER_BATCH", 2.5, "an int >= 1"),
        ("SOLVER.IMS_PER_BATCH", True, "an int >= 1"),
        ("SOLVER.OPTIMIZER", "Adam", "one of 'SGD', 'AdamW'"),
        ("SOLVER.STEPS", [0.9, 0.7], "ascending fractions"),
        ("SOLVER.STEPS", [30000], "ascending fractions"),
        ("SOLVER.CLIP_GRADIENTS.ENABLED", "yes", "a bool"),
        ("MODEL.BACKBONE.FREEZE_AT", 7, "an int in [0, 5]"),
        ("MODEL.ANCHOR_GENERATOR.SIZES", [[32], [64], [128]], "5 lists"),
        ("MODEL.ANCHOR_GENERATOR.SIZES", [32, 64, 128, 256, 512], "5 lists"),
        ("MODEL.ANCHOR_GENERATOR.SIZES", [[32, 40], [64], [128], [256], [512]], "equally many"),
    ],
)
def test_validate_rejects_wrong_types_naming_key_and_type(key, value, expected):
    with pytest.raises(ConfigError) as err:
        validate_params({key: value})
    assert key in str(err.value) and expected in str(err.value)


def test_unknown_key_lists_valid_keys():
    with pytest.raises(ConfigError) as err:
        TorchvisionMaskRCNN.check_params({"SOLVER.BASE_LR": 0.01, "lr0": 0.01})
    message = str(err.value)
    assert "'lr0'" in message and "SOLVER.BASE_LR" in message and "MODEL.BACKBONE.FREEZE_AT" in message
    with pytest.raises(ConfigError, match="SOLVER.MOMENTUM"):
        TorchvisionMaskRCNN.check_params({"SOLVER.MOMENTUM": 1.5})


def test_steps_and_lr_multiplier():
    assert steps_in_iterations([0.7, 0.9], 1000) == [700, 900]
    assert steps_in_iterations([0.8], 9) == [7]
    kw = {"warmup_iters": 10, "warmup_factor": 0.1, "steps": [20, 30], "gamma": 0.1}
    assert lr_multiplier(0, **kw) == pytest.approx(0.1)
    assert lr_multiplier(5, **kw) == pytest.approx(0.55)
    assert lr_multiplier(10, **kw) == 1.0 and lr_multiplier(19, **kw) == 1.0
    assert lr_multiplier(20, **kw) == pytest.approx(0.1) and lr_multiplier(30, **kw) == pytest.approx(0.01)


def test_registry_and_class_attributes():
    cls = get_adapter("maskrcnn", "torchvision")
    assert cls is TorchvisionMaskRCNN
    assert (cls.framework, cls.backend, cls.native_prefix) == ("maskrcnn", "torchvision", "maskrcnn/")
    assert cls.param_names() == PARAM_NAMES
    assert cls.weights_in_checkpoint(Path("/x")) == Path("/x/checkpoint.pt")
    assert cls.default_model_cpu == SMALL and cls.seed_key in PARAM_NAMES


# ---- check_model ---------------------------------------------------------------------------------
def test_check_model_rejects_unknown_model():
    with pytest.raises(ConfigError) as err:
        TorchvisionMaskRCNN.check_model("maskrcnn_resnet101", None)
    assert "maskrcnn_resnet50_fpn_v2" in str(err.value) and SMALL in str(err.value)
    TorchvisionMaskRCNN.check_model(SMALL, None)


def test_check_model_rejects_missing_corrupt_and_foreign_weights(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        TorchvisionMaskRCNN.check_model(SMALL, str(tmp_path / "nope.pt"))
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(b"\x80\x02not a checkpoint at all" * 10)
    with pytest.raises(ConfigError, match="cannot be read"):
        TorchvisionMaskRCNN.check_model(SMALL, str(corrupt))
    foreign = tmp_path / "foreign.pt"
    torch.save({"fc.weight": torch.zeros(3, 3)}, foreign)
    with pytest.raises(ConfigError, match="do not fit"):
        TorchvisionMaskRCNN.check_model(SMALL, str(foreign))
    with pytest.raises(ConfigError, match="not a torchvision weights name"):
        TorchvisionMaskRCNN.check_model("maskrcnn_resnet50_fpn", "COCO_V7")


def test_check_model_accepts_a_state_dict_of_the_same_model_with_other_classes(tmp_path):
    net, _ = tvm.build_model(SMALL, num_classes=7, params={}, weights=None, max_detections=10)
    path = tmp_path / "small.pt"
    torch.save(net.state_dict(), path)
    TorchvisionMaskRCNN.check_model(SMALL, str(path))


def test_check_model_offline_download_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))  # an empty hub cache
    monkeypatch.setattr(tvm, "is_online", lambda url, timeout=3.0: False)
    for model, weights in (
        ("maskrcnn_resnet50_fpn_v2", "DEFAULT"),
        ("maskrcnn_resnet50_fpn", "COCO_V1"),
        (SMALL, "IMAGENET1K_V1"),
    ):
        with pytest.raises(ConfigError) as err:
            TorchvisionMaskRCNN.check_model(model, weights)
        assert "needs a download and this machine is offline" in str(err.value)
        assert "leave --weights out" in str(err.value)


def test_is_online_is_bounded_in_time():
    import time

    start = time.perf_counter()
    tvm.is_online("https://download.pytorch.org/models/x.pth", timeout=1.0)
    assert time.perf_counter() - start < 3.0


# ---- training ------------------------------------------------------------------------------------
def test_two_epochs_report_finite_losses_and_warmup_lr(first_run):
    seen = first_run["seen"]
    assert [epoch for epoch, _ in seen] == [1, 2]
    for _, native in seen:
        for key in ("loss", "loss_mask", "loss_box_reg", "loss_classifier", "loss_objectness", "loss_rpn_box_reg"):
            assert math.isfinite(native[f"maskrcnn/{key}"]), key
        assert native["maskrcnn/iter_time"] > 0
        assert set(native) <= TorchvisionMaskRCNN.native_metric_names()
    # 12 images / batch 4 = 3 iterations per epoch; lr of the last iteration of each epoch (0-based 2 and 5);
    # total 9 iterations, STEPS [0.8] -> iteration 7; warmup 4 iterations from factor 0.1
    assert seen[0][1]["maskrcnn/lr"] == pytest.approx(0.01 * (0.1 * 0.5 + 0.5))
    assert seen[1][1]["maskrcnn/lr"] == pytest.approx(0.01)
    assert first_run["training_after_predict"] is True


def test_predict_val_gives_coco_results_the_evaluator_accepts(first_run, dataset):
    predictions = first_run["predictions"]
    assert predictions, "a from-scratch model at score threshold 0.001 still predicts something"
    val = json.loads(Path(dataset.val_json).read_text())
    sizes = {im["id"]: [im["height"], im["width"]] for im in val["images"]}
    per_image: dict[int, int] = {}
    for p in predictions:
        assert p["image_id"] in sizes and p["category_id"] in dataset.category_ids
        assert p["segmentation"]["size"] == sizes[p["image_id"]] and len(p["bbox"]) == 4
        assert 0.0 <= p["score"] <= 1.0
        per_image[p["image_id"]] = per_image.get(p["image_id"], 0) + 1
    assert max(per_image.values()) <= 100
    metrics = CocoEvaluator(dataset.val_json).evaluate(predictions)
    assert set(metrics) >= {"segm/AP", "segm/AP50", "bbox/AP"}
    assert all(math.isfinite(v) for v in metrics.values())


def test_resume_continues_at_epoch_3_with_the_saved_weights(first_run, dataset, tmp_path):
    checkpoint = first_run["checkpoint"]
    saved = torch.load(TorchvisionMaskRCNN.weights_in_checkpoint(checkpoint), weights_only=True)
    assert saved["epoch"] == 2 and saved["iteration"] == 6

    fresh = TorchvisionMaskRCNN(PARAMS, _context(dataset, tmp_path))
    fresh.load_checkpoint(checkpoint)
    restored = fresh.model.state_dict()
    assert restored.keys() == saved["model"].keys()
    assert all(torch.equal(restored[k], saved["model"][k]) for k in restored)
    assert fresh.optimizer.param_groups[0]["lr"] == pytest.approx(first_run["adapter"].optimizer.param_groups[0]["lr"])

    final: dict[str, dict] = {}

    def record(name):
        def on_epoch_end(epoch, native):
            if epoch == 3:
                final[name] = {k: v.clone() for k, v in adapters[name].model.state_dict().items()}
            calls.setdefault(name, []).append(epoch)

        return on_epoch_end

    calls: dict[str, list[int]] = {}
    adapters = {
        "resumed": TorchvisionMaskRCNN(PARAMS, _context(dataset, tmp_path / "b")),
        "straight": TorchvisionMaskRCNN(PARAMS, _context(dataset, tmp_path / "c")),
    }
    adapters["resumed"].train(record("resumed"), resume_from=checkpoint)
    adapters["straight"].train(record("straight"))
    assert calls == {"resumed": [3], "straight": [1, 2, 3]}
    # same data stream, RNG, optimizer and schedule: resuming changes nothing
    a, b = final["resumed"], final["straight"]
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a)


def test_resume_with_nothing_left_returns_at_once(first_run, dataset, tmp_path):
    adapter = TorchvisionMaskRCNN(PARAMS, _context(dataset, tmp_path, max_epochs=2))
    adapter.train(lambda e, n: pytest.fail("no epoch left to train"), resume_from=first_run["checkpoint"])


def test_huge_lr_raises_training_diverged(dataset, tmp_path):
    params = {**PARAMS, "SOLVER.BASE_LR": 50.0, "SOLVER.WARMUP_ITERS": 0, "SOLVER.CLIP_GRADIENTS.ENABLED": False}
    adapter = TorchvisionMaskRCNN(params, _context(dataset, tmp_path, max_epochs=2))
    with pytest.raises(TrainingDiverged) as err:
        adapter.train(lambda e, n: None)
    assert re.fullmatch(r"loss is (nan|inf|-inf) at iteration \d+ \(epoch \d+\)", str(err.value))


def test_native_config_reports_what_is_used(dataset, tmp_path):
    cfg = TorchvisionMaskRCNN.native_config(PARAMS, _context(dataset, tmp_path))
    json.dumps(cfg)
    assert cfg["model"] == SMALL and cfg["weights"] is None and cfg["trainable_backbone_layers"] == 5
    assert cfg["model_kwargs"]["num_classes"] == dataset.num_classes + 1
    assert cfg["model_kwargs"]["box_batch_size_per_image"] == 64
    assert cfg["solver"]["iters_per_epoch"] == 3 and cfg["solver"]["max_iter"] == 9
    assert cfg["solver"]["steps"] == [7] and cfg["solver"]["optimizer"]["name"] == "SGD"
    ipe = TorchvisionMaskRCNN.native_config(PARAMS, _context(dataset, tmp_path, iters_per_epoch=5))
    assert ipe["solver"]["iters_per_epoch"] == 5 and ipe["solver"]["max_iter"] == 15


def test_targets_skip_crowd_and_read_rle(tmp_path):
    from pycocotools import mask as mask_utils

    from segtune.cocodata.results import ImageRecord
    from segtune.trainers.maskrcnn.torchvision.data import load_instances

    record = ImageRecord(1, tmp_path / "x.png", width=20, height=10)
    square = np.zeros((10, 20), np.uint8, order="F")
    square[2:6, 3:9] = 1
    rle = mask_utils.encode(square)
    rle["counts"] = rle["counts"].decode()
    anns = [
        {"category_id": 5, "bbox": [3, 2, 6, 4], "segmentation": rle, "iscrowd": 0},
        {"category_id": 5, "bbox": [0, 0, 10, 5], "segmentation": [[0, 0, 10, 0, 10, 5, 0, 5]], "iscrowd": 1},
        {"category_id": 7, "bbox": [10, 5, 5, 5], "segmentation": [[10, 5, 15, 5, 15, 10, 10, 10]]},
    ]
    inst = load_instances(anns, record, {5: 1, 7: 2})
    assert inst.labels.tolist() == [1, 2] and inst.masks.shape == (2, 10, 20)
    assert inst.masks[0].sum() == 24 and inst.boxes[0].tolist() == [3, 2, 9, 6]
    empty = load_instances([], record, {5: 1})
    assert empty.boxes.shape == (0, 4) and empty.masks.shape == (0, 10, 20)
