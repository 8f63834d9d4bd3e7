"""The Detectron2 Mask R-CNN backend: real (tiny) training, predictions, checkpoints, config checks.

Detectron2 is not on PyPI, so CI has no detectron2 and skips this module. To run it, build
detectron2 from source (its INSTALL.md) into an environment that also sees this repo's packages.
"""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
import textwrap
import time
import urllib.error
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip(
    "detectron2", reason="detectron2 is not installed (not on PyPI; build it from source to run these tests)"
)

import torch

from segtune.cocodata.evaluator import METRIC_KEYS, CocoEvaluator
from segtune.cocodata.synthetic import make_demo_dataset
from segtune.core.errors import ConfigError
from segtune.core.record import PreparedDataset
from segtune.trainers.base import TrainingDiverged, TrialContext
from segtune.trainers.maskrcnn.detectron2 import config as d2config
from segtune.trainers.maskrcnn.detectron2 import weights as d2weights
from segtune.trainers.maskrcnn.detectron2 import zoo as d2zoo
from segtune.trainers.maskrcnn.detectron2.adapter import CHECKPOINT_FILE, Detectron2MaskRCNN
from segtune.trainers.registry import get_adapter

# pycocotools' own decode() trips a numpy 2 deprecation on every call; not ours to fix.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

REPO = Path(__file__).resolve().parents[1]
ITERS_PER_EPOCH = 2
ZOO_MASK_RCNN = "COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_3x.yaml"
# Small batches keep the test fast; the warmup would otherwise last the whole (tiny) run.
FAST = {"SOLVER.IMS_PER_BATCH": 2, "SOLVER.WARMUP_ITERS": 1, "SEED": 3}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> PreparedDataset:
    root = make_demo_dataset(tmp_path_factory.mktemp("d2data") / "demo", n_train=12, n_val=4, image_size=96, seed=1)
    train_json = root / "annotations" / "instances_train.json"
    categories = json.loads(train_json.read_text())["categories"]
    return PreparedDataset(
        name="demo",
        content_hash="test",
        train_json=train_json,
        train_images=root / "images" / "train",
        val_json=root / "annotations" / "instances_val.json",
        val_images=root / "images" / "val",
        category_ids=tuple(c["id"] for c in categories),
        category_names=tuple(c["name"] for c in categories),
        num_train_images=12,
        num_val_images=4,
    )


def _context(
    dataset: PreparedDataset, out: Path, max_epochs: int = 2, iters_per_epoch: int = ITERS_PER_EPOCH, **kw
) -> TrialContext:
    return TrialContext(
        dataset=dataset,
        output_dir=out,
        max_epochs=max_epochs,
        device="cpu",
        max_detections=50,
        options={"iters_per_epoch": iters_per_epoch},
        **kw,
    )


class Recorder:
    """An on_epoch_end callback that does what the trial runner does: predict, checkpoint."""

    def __init__(self, adapter: Detectron2MaskRCNN, checkpoints: Path) -> None:
        self.adapter = adapter
        self.checkpoints = checkpoints
        self.epochs: list[int] = []
        self.native: list[dict[str, float]] = []
        self.predictions: list[list[dict]] = []

    def __call__(self, epoch: int, native: dict[str, float]) -> None:
        self.epochs.append(epoch)
        self.native.append(native)
        self.predictions.append(self.adapter.predict_val())
        directory = self.checkpoints / f"epoch{epoch}"
        directory.mkdir(parents=True)
        self.adapter.save_checkpoint(directory)


@pytest.fixture(scope="module")
def trained(dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("d2trial")
    adapter = Detectron2MaskRCNN(FAST, _context(dataset, out / "trial"))
    recorder = Recorder(adapter, out / "checkpoints")
    adapter.train(recorder)
    return recorder


# ---- training ----------------------------------------------------------------------------------
def test_two_epochs_report_twice_with_finite_losses(trained):
    assert trained.epochs == [1, 2]
    for epoch, native in zip(trained.epochs, trained.native):
        assert all(key.startswith("detectron2/") for key in native)
        for key in ("total_loss", "loss_mask", "loss_cls", "loss_rpn_cls", "lr", "epoch_time"):
            assert math.isfinite(native[f"detectron2/{key}"]), key
        assert native["detectron2/iteration"] == epoch * ITERS_PER_EPOCH
        assert native["detectron2/total_loss"] > 0


def test_trial_files_and_no_detectron2_eval_or_final_checkpoint(trained):
    out = Path(trained.adapter.context.output_dir) / "detectron2"
    assert (out / "log.txt").read_text().strip()
    assert (out / "config.yaml").is_file() and (out / "metrics.json").is_file()
    assert not (out / "model_final.pth").exists()  # Detectron2's PeriodicCheckpointer is not used


def test_predict_val_is_accepted_by_the_evaluator(trained, dataset):
    evaluator = CocoEvaluator(dataset.val_json)
    val_ids = {img["id"] for img in json.loads(dataset.val_json.read_text())["images"]}
    for predictions in trained.predictions:
        metrics = evaluator.evaluate(predictions)
        assert set(metrics) == set(METRIC_KEYS)
        assert all(math.isfinite(v) for v in metrics.values())
        for p in predictions:
            assert p["image_id"] in val_ids and p["category_id"] in dataset.category_ids
            assert p["segmentation"]["size"] == [96, 96]  # full resolution
            assert len(p["bbox"]) == 4 and 0 <= p["score"] <= 1
        assert len({p["image_id"] for p in predictions}) <= len(val_ids)
        per_image = {i: sum(p["image_id"] == i for p in predictions) for i in val_ids}
        assert max(per_image.values()) <= 50  # context.max_detections
    assert trained.adapter._trainer.model.training  # predict_val restored train mode


def test_checkpoint_holds_iteration_optimizer_and_scheduler(trained):
    first = trained.checkpoints / "epoch1"
    assert Detectron2MaskRCNN.weights_in_checkpoint(first) == first / CHECKPOINT_FILE
    state = torch.load(first / CHECKPOINT_FILE, map_location="cpu")
    assert state["iteration"] == ITERS_PER_EPOCH - 1 == state["trainer"]["iteration"]
    assert state["trainer"]["_trainer"]["optimizer"]["state"]  # SGD momentum buffers
    assert any("LRScheduler" in name for name in state["trainer"]["hooks"])
    assert (first / "config.yaml").is_file()


def test_resume_continues_at_the_next_iteration(trained, dataset, tmp_path):
    adapter = Detectron2MaskRCNN(FAST, _context(dataset, tmp_path / "resumed"))
    epochs, native = [], []
    adapter.train(lambda e, n: (epochs.append(e), native.append(n)), resume_from=trained.checkpoints / "epoch1")
    assert epochs == [2]
    assert native[0]["detectron2/iteration"] == 2 * ITERS_PER_EPOCH
    assert adapter._trainer.start_iter == ITERS_PER_EPOCH
    # the LR schedule continued from the checkpoint, not from iteration 0
    assert native[0]["detectron2/lr"] == pytest.approx(trained.native[1]["detectron2/lr"])

    finished = Detectron2MaskRCNN(FAST, _context(dataset, tmp_path / "finished"))
    finished.train(lambda e, n: pytest.fail("nothing is left to train"), resume_from=trained.checkpoints / "epoch2")


def test_resume_restores_the_optimizer_state(trained, dataset, tmp_path):
    from segtune.trainers.maskrcnn.detectron2.hooks import SegtuneTrainer, load_resumable, registered_dataset

    name = "segtune_optimizer_check"
    plan = d2config.build_cfg(FAST, _context(dataset, tmp_path), train_dataset=name, weights="")
    with registered_dataset(
        name, dataset.train_json, dataset.train_images, dataset.category_ids, dataset.category_names
    ):
        trainer = SegtuneTrainer(plan.cfg)
    file = trained.checkpoints / "epoch1" / CHECKPOINT_FILE
    load_resumable(trainer, file)
    assert trainer.start_iter == ITERS_PER_EPOCH
    saved = torch.load(file, map_location="cpu")["trainer"]["_trainer"]["optimizer"]["state"]
    loaded = trainer.optimizer.state_dict()["state"]
    assert saved and saved.keys() == loaded.keys()
    assert all(torch.equal(saved[k]["momentum_buffer"], loaded[k]["momentum_buffer"]) for k in saved)


def test_no_log_handler_pile_up(trained, dataset, tmp_path):
    logger = logging.getLogger("detectron2")
    before = list(logger.handlers)
    adapter = Detectron2MaskRCNN(FAST, _context(dataset, tmp_path / "again"))
    adapter.train(lambda e, n: None, resume_from=trained.checkpoints / "epoch2")
    assert logger.handlers == before


def test_huge_learning_rate_raises_training_diverged(dataset, tmp_path):
    params = {**FAST, "SOLVER.BASE_LR": 1e5, "SOLVER.WARMUP_ITERS": 0}
    adapter = Detectron2MaskRCNN(params, _context(dataset, tmp_path, max_epochs=1, iters_per_epoch=20))
    with pytest.raises(TrainingDiverged, match="(?i)nan|inf|diverged"):
        adapter.train(lambda e, n: pytest.fail("diverged training reached an epoch end"))


def test_adamw_and_gradient_clipping(dataset, tmp_path):
    from segtune.trainers.maskrcnn.detectron2.hooks import SegtuneTrainer

    params = {"SOLVER.OPTIMIZER": "AdamW", "SOLVER.CLIP_GRADIENTS.ENABLED": True, "SOLVER.WEIGHT_DECAY": 0.05}
    cfg = d2config.build_cfg(params, _context(dataset, tmp_path), train_dataset="x", weights="").cfg
    assert cfg.SOLVER.OPTIMIZER == "AdamW"
    optimizer = SegtuneTrainer.build_optimizer(cfg, torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2)))
    assert isinstance(optimizer, torch.optim.AdamW) and type(optimizer) is not torch.optim.AdamW  # clipping subclass
    decays = sorted({g["weight_decay"] for g in optimizer.param_groups})
    assert decays == [0.0, 0.05]  # no weight decay on norm layers


@pytest.mark.parametrize(
    "steps, max_epochs",
    [
        ([0.5, 0.75], 4),  # regular: Detectron2's own scheduler
        ([0.5, 0.55], 2),  # both round to iteration 2
        ([0.1, 0.99], 2),  # round to 0 and to MAX_ITER, which fvcore rejects
        ([0.75], 1),  # MAX_ITER 2: the step rounds to 2 == MAX_ITER
    ],
)
def test_lr_schedule_follows_the_shared_definition(dataset, tmp_path, steps, max_epochs):
    from segtune.trainers.maskrcnn.detectron2.hooks import SegtuneTrainer
    from segtune.trainers.maskrcnn.params import lr_multiplier

    params = {"SOLVER.STEPS": steps, "SOLVER.WARMUP_ITERS": 3, "SOLVER.WARMUP_FACTOR": 0.1, "SOLVER.GAMMA": 0.5}
    cfg = d2config.build_cfg(
        params, _context(dataset, tmp_path, max_epochs=max_epochs), train_dataset="x", weights=""
    ).cfg
    optimizer = torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=cfg.SOLVER.BASE_LR)
    scheduler = SegtuneTrainer.build_lr_scheduler(cfg, optimizer)
    for iteration in range(cfg.SOLVER.MAX_ITER):
        expected = cfg.SOLVER.BASE_LR * lr_multiplier(
            iteration, warmup_iters=3, warmup_factor=0.1, steps=cfg.SOLVER.STEPS, gamma=0.5
        )
        assert optimizer.param_groups[0]["lr"] == pytest.approx(expected), iteration
        optimizer.step()
        scheduler.step()


# ---- datasets ----------------------------------------------------------------------------------
def test_category_index_follows_the_datasets_category_ids(dataset):
    from segtune.trainers.maskrcnn.detectron2.hooks import load_dataset_dicts

    order = tuple(reversed(dataset.category_ids))
    dicts = load_dataset_dicts(dataset.train_json, dataset.train_images, order)
    raw = json.loads(dataset.train_json.read_text())["annotations"]
    assert sorted(order[a["category_id"]] for d in dicts for a in d["annotations"]) == sorted(
        a["category_id"] for a in raw
    )
    without_first = load_dataset_dicts(dataset.train_json, dataset.train_images, order[1:])
    assert all(a["category_id"] in (0, 1) for d in without_first for a in d["annotations"])


def test_dataset_is_unregistered_after_the_trial(trained):
    from detectron2.data import DatasetCatalog

    assert not [name for name in DatasetCatalog.list() if name.startswith("segtune_")]


# ---- parameters --------------------------------------------------------------------------------
def test_params_accept_any_detectron2_key_and_cast_numpy():
    names = Detectron2MaskRCNN.param_names()
    assert {"SOLVER.BASE_LR", "SOLVER.OPTIMIZER", "SEED", "MODEL.RPN.POST_NMS_TOPK_TRAIN"} <= names
    assert "SOLVER.MAX_ITER" not in names and "DATASETS.TRAIN" not in names
    Detectron2MaskRCNN.check_params(
        {
            "MODEL.RPN.POST_NMS_TOPK_TRAIN": np.int64(500),
            "MODEL.RPN.NMS_THRESH": 1,  # an int for a float key
            "SOLVER.BASE_LR": np.float32(0.02),
            "SOLVER.STEPS": [0.5, 0.8],
            "INPUT.MIN_SIZE_TRAIN": np.int64(96),
        }
    )


@pytest.mark.parametrize(
    "params, match",
    [
        ({"SOLVER.BASE_LRR": 0.1}, "did you mean SOLVER.BASE_LR"),
        ({"SOLVER.MAX_ITER": 10}, "set by segtune"),
        ({"DATASETS.TRAIN": ["x"]}, "set by segtune"),
        ({"MODEL.RPN.POST_NMS_TOPK_TRAIN": "many"}, "MODEL.RPN.POST_NMS_TOPK_TRAIN"),
        ({"SOLVER.BASE_LR": -1.0}, "SOLVER.BASE_LR"),
        ({"SOLVER.OPTIMIZER": "Adam"}, "SOLVER.OPTIMIZER"),
    ],
)
def test_bad_params_are_config_errors(params, match):
    with pytest.raises(ConfigError, match=match):
        Detectron2MaskRCNN.check_params(params)


def test_native_config_is_the_full_detectron2_config(dataset, tmp_path):
    params = {"SOLVER.STEPS": [0.5], "SOLVER.OPTIMIZER": "AdamW", "MODEL.RPN.POST_NMS_TOPK_TRAIN": 77}
    cfg = Detectron2MaskRCNN.native_config(params, _context(dataset, tmp_path, max_epochs=10))
    assert cfg["SOLVER"]["MAX_ITER"] == 10 * ITERS_PER_EPOCH
    assert cfg["SOLVER"]["STEPS"] == [10]
    assert cfg["SOLVER"]["OPTIMIZER"] == "AdamW"
    assert cfg["MODEL"]["RPN"]["POST_NMS_TOPK_TRAIN"] == 77
    assert cfg["MODEL"]["ROI_HEADS"]["NUM_CLASSES"] == dataset.num_classes
    assert cfg["MODEL"]["RESNETS"]["NORM"] == "BN" and cfg["MODEL"]["RESNETS"]["DEPTH"] == 18
    assert cfg["TEST"]["DETECTIONS_PER_IMAGE"] == 50 and cfg["TEST"]["EVAL_PERIOD"] == 0


def test_zoo_config_steps_keep_their_place_in_the_schedule(dataset, tmp_path):
    context = TrialContext(
        dataset=dataset,
        output_dir=tmp_path,
        max_epochs=27,
        device="cpu",
        model=ZOO_MASK_RCNN,
        options={"iters_per_epoch": 100},
    )
    cfg = d2config.build_cfg({}, context, train_dataset="x", weights="").cfg
    assert cfg.SOLVER.MAX_ITER == 2700 and tuple(cfg.SOLVER.STEPS) == (2100, 2500)  # 270k: (210k, 250k)
    assert cfg.MODEL.WEIGHTS == "" and cfg.MODEL.RESNETS.DEPTH == 50
    assert cfg.MODEL.BACKBONE.FREEZE_AT == 0  # the zoo's 2 freezes random layers from scratch


def test_freeze_at_applies_with_weights_only(dataset, tmp_path, trained):
    context = TrialContext(
        dataset=dataset, output_dir=tmp_path, max_epochs=1, device="cpu", options={"iters_per_epoch": 1}
    )
    params = {"MODEL.BACKBONE.FREEZE_AT": 2}
    weights = str(trained.checkpoints / "epoch1" / CHECKPOINT_FILE)
    assert d2config.build_cfg(params, context, train_dataset="x", weights=weights).cfg.MODEL.BACKBONE.FREEZE_AT == 2
    with pytest.warns(UserWarning, match="FREEZE_AT has no effect from scratch"):
        cfg = d2config.build_cfg(params, context, train_dataset="x", weights="").cfg
    assert cfg.MODEL.BACKBONE.FREEZE_AT == 0


# ---- models and weights ------------------------------------------------------------------------
def test_registry_finds_the_adapter():
    assert get_adapter("maskrcnn", "detectron2") is Detectron2MaskRCNN


def test_zoo_names_resolve_without_pkg_resources(tmp_path):
    """In a fresh interpreter where `import pkg_resources` fails, as with setuptools >= 81."""
    script = textwrap.dedent(f"""
        import sys, warnings
        sys.modules["pkg_resources"] = None  # any import of it now raises ImportError
        from trainers.maskrcnn.detectron2.adapter import Detectron2MaskRCNN
        from trainers.maskrcnn.detectron2 import weights as d2w, zoo as c
        model = c.resolve_model({ZOO_MASK_RCNN!r})
        assert model.path.is_file() and model.path.parts[-3:] == ("configs", "COCO-InstanceSegmentation",
            "mask_rcnn_R_50_FPN_3x.yaml"), model
        cfg = c.load_model_config(model)
        assert cfg.MODEL.MASK_ON and cfg.MODEL.RESNETS.DEPTH == 50
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            Detectron2MaskRCNN.check_model("Misc/cascade_mask_rcnn_R_50_FPN_3x", None)
        assert any("FrozenBN" in str(w.message) for w in caught)
        Detectron2MaskRCNN.check_model("Misc/scratch_mask_rcnn_R_50_FPN_3x_gn.yaml", None)
        url = d2w.weights_url({ZOO_MASK_RCNN!r})
        assert url.startswith("https://dl.fbaipublicfiles.com/detectron2/COCO-InstanceSegmentation/"
                              "mask_rcnn_R_50_FPN_3x/") and url.endswith(".pkl"), url
        assert "detectron2.model_zoo" not in sys.modules
        print("ok")
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-3000:]


def test_resolve_model_for_the_trials(tmp_path, monkeypatch):
    zoo_base = d2zoo.package_dir() / "model_zoo" / "configs" / "Base-RCNN-FPN.yaml"
    (tmp_path / "mine.yaml").write_text(f"_BASE_: {zoo_base}\nMODEL:\n  MASK_ON: True\n  RESNETS:\n    NORM: BN\n")
    monkeypatch.chdir(tmp_path)
    assert Detectron2MaskRCNN.resolve_model("mine.yaml", None) == (str(tmp_path / "mine.yaml"), None)
    with pytest.warns(UserWarning, match="FrozenBN, which diverges when trained from scratch"):
        assert Detectron2MaskRCNN.resolve_model(ZOO_MASK_RCNN, None) == (ZOO_MASK_RCNN, None)  # found per node
    assert Detectron2MaskRCNN.resolve_model("", None) == (Detectron2MaskRCNN.default_model, None)
    assert Detectron2MaskRCNN.default_model_cpu == d2zoo.SMALL_MODEL
    assert Detectron2MaskRCNN.seed_key in Detectron2MaskRCNN.param_names()


def test_model_zoo_configs_ship_inside_the_package():
    assert (d2zoo.package_dir() / "model_zoo" / "configs" / ZOO_MASK_RCNN).is_file()


def test_unknown_model_config_says_where_it_looked(tmp_path):
    with pytest.raises(ConfigError, match="looked in .*model_zoo/configs") as info:
        Detectron2MaskRCNN.check_model("COCO-InstanceSegmentation/mask_rcnn_R_50_FPN_9x.yaml", None)
    assert "\n" not in str(info.value) and "did you mean" in str(info.value)
    with pytest.raises(ConfigError, match="not found"):
        Detectron2MaskRCNN.check_model(str(tmp_path / "missing.yaml"), None)
    with pytest.raises(ConfigError, match="not an instance-segmentation"):
        Detectron2MaskRCNN.check_model("COCO-Detection/faster_rcnn_R_50_FPN_1x.yaml", None)
    with pytest.raises(ConfigError, match="LazyConfig"):
        Detectron2MaskRCNN.check_model("new_baselines/mask_rcnn_R_50_FPN_100ep_LSJ.py", None)


def test_missing_and_corrupt_weights_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        Detectron2MaskRCNN.check_model("", str(tmp_path / "nope.pth"))
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="cannot be loaded"):
        Detectron2MaskRCNN.check_model("", str(corrupt))


def test_local_checkpoint_is_usable_weights(trained):
    Detectron2MaskRCNN.check_model("", str(trained.checkpoints / "epoch1" / CHECKPOINT_FILE))


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FVCORE_CACHE", str(tmp_path / "cache"))


def test_download_offline_is_a_quick_config_error(empty_cache, monkeypatch):
    def offline(url):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(d2weights, "_open_url", offline)
    for weights in (ZOO_MASK_RCNN, "detectron2://ImageNetPretrained/MSRA/R-50.pkl"):
        with pytest.raises(ConfigError, match="offline") as info:
            Detectron2MaskRCNN.check_model(ZOO_MASK_RCNN, weights)
        assert "https://dl.fbaipublicfiles.com/detectron2/" in str(info.value) and "\n" not in str(info.value)


def test_unreachable_host_fails_fast(empty_cache):
    start = time.perf_counter()
    with pytest.raises(ConfigError, match="offline|HTTP"):
        Detectron2MaskRCNN.check_model("", "https://segtune-offline.invalid/model_final.pkl")
    assert time.perf_counter() - start < 3 * d2weights.PROBE_TIMEOUT_S


def test_cached_download_needs_no_network(empty_cache, monkeypatch, trained):
    url = "https://dl.fbaipublicfiles.com/detectron2/some/model_final.pth"
    cached = d2weights.cached_path(url)
    cached.parent.mkdir(parents=True)
    cached.write_bytes((trained.checkpoints / "epoch1" / CHECKPOINT_FILE).read_bytes())
    monkeypatch.setattr(d2weights, "_open_url", lambda url: pytest.fail("no request for a cached file"))
    assert d2weights.resolve_weights("detectron2://some/model_final.pth") == str(cached)


def test_single_image_inference_is_timed_and_training_goes_on(dataset, tmp_path):
    from segtune.runners.trial.cost import TrialCost

    adapter = Detectron2MaskRCNN(FAST, _context(dataset, tmp_path / "trial", max_epochs=1))
    cost, rows, modes = TrialCost(adapter, "cpu"), [], []

    def on_epoch_end(epoch: int, native: dict[str, float]) -> None:
        cost.epoch_trained()
        rows.append(cost.metrics(epoch))
        modes.append(adapter._trainer.model.training)

    adapter.train(on_epoch_end)
    (row,) = rows
    assert modes == [True]  # back in training mode after the timed inferences
    assert row["cost/latency_ms"] > 0 and row["cost/infer_mem_mb"] > 0 and row["cost/latency_epoch"] == 1
    assert round(row["cost/params_m"] * 1e6) == sum(p.numel() for p in adapter._trainer.model.parameters())
