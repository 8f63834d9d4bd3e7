"""The YOLO adapter outside Ray: one pass over the val set per epoch, and several trials in one process
(as a reused Ray actor runs them) that do not leak into each other."""

from __future__ import annotations

import os
import weakref
from pathlib import Path

import pytest
import torch

from segtune.cocodata.prepare import prepare_dataset
from segtune.cocodata.synthetic import make_demo_dataset
from segtune.runners.trial.startup import release_previous_trial
from segtune.trainers.base import TrialContext
from segtune.trainers.yolo.adapter import YoloAdapter

PARAMS = {"imgsz": 64, "batch": 4, "nbs": 4, "optimizer": "SGD", "lr0": 0.01, "close_mosaic": 0, "seed": 0}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    os.environ.setdefault("YOLO_OFFLINE", "1")
    root = tmp_path_factory.mktemp("yolo-data")
    data = make_demo_dataset(root / "demo", n_train=8, n_val=4, image_size=64, seed=4)
    return prepare_dataset(data, cache_dir=root / "cache", layouts=YoloAdapter.data_layouts(), log=lambda _: None)


def _run(dataset, out: Path, metric: str, monkeypatch, epochs: int = 2, stop_at: int | None = None) -> dict:
    """Train one trial; count Ultralytics' validations and what the trial's callback saw."""
    seen: dict = {"validations": 0, "epochs": [], "natives": [], "predictions": []}
    build = YoloAdapter._build_model

    def counting_build(self, resume_checkpoint):
        model = build(self, resume_checkpoint)
        model.add_callback("on_val_start", lambda validator: seen.__setitem__("validations", seen["validations"] + 1))
        return model

    monkeypatch.setattr(YoloAdapter, "_build_model", counting_build)
    adapter = YoloAdapter(
        PARAMS, TrialContext(dataset=dataset, output_dir=out, max_epochs=epochs, device="cpu", metric=metric)
    )

    def on_epoch_end(epoch: int, native: dict) -> None:
        seen["epochs"].append(epoch)
        seen["natives"].append(native)
        seen["predictions"].append(len(adapter.predict_val()))
        (out / f"ckpt{epoch}").mkdir(parents=True)
        adapter.save_checkpoint(out / f"ckpt{epoch}")
        if epoch == stop_at:
            raise SystemExit(0)  # what Ray's tune.report raises in a trial the scheduler stops

    try:
        adapter.train(on_epoch_end)
    except SystemExit:
        pass
    seen["trainer"] = weakref.ref(adapter._trainer)
    return seen


def test_coco_metric_means_one_val_pass_per_epoch(dataset, tmp_path, monkeypatch):
    seen = _run(dataset, tmp_path, "segm/AP", monkeypatch, epochs=3)
    assert seen["epochs"] == [1, 2, 3]
    assert seen["validations"] == 0  # not even Ultralytics' final-epoch or best.pt validation
    for native in seen["natives"]:
        assert "yolo/train/seg_loss" in native and "yolo/lr/pg0" in native
        assert not any(k.startswith("yolo/val/") or "mAP" in k for k in native)


def test_native_val_metric_keeps_ultralytics_validation(dataset, tmp_path, monkeypatch):
    seen = _run(dataset, tmp_path, "yolo/val/seg_loss", monkeypatch, epochs=3)
    assert seen["validations"] == 3  # one per epoch (best.pt is not re-validated: the trial removed it)
    assert all("yolo/val/seg_loss" in native and "yolo/mAP50-95(M)" in native for native in seen["natives"])


def test_trials_in_one_process_do_not_leak(dataset, tmp_path, monkeypatch):
    """A reused Ray actor runs trial after trial: a stopped trial must leave no callback or global
    torch setting behind (Ultralytics' TensorBoard writer, also global, is off under pytest)."""
    deterministic = torch.are_deterministic_algorithms_enabled()
    first = _run(dataset, tmp_path / "a", "segm/AP", monkeypatch, epochs=3, stop_at=1)
    assert first["epochs"] == [1]
    assert torch.are_deterministic_algorithms_enabled() == deterministic
    release_previous_trial()  # what the next trial in a reused process does first
    assert first["trainer"]() is None  # the stopped trial's trainer, model and data loaders are gone
    second = _run(dataset, tmp_path / "b", "segm/AP", monkeypatch, epochs=2)
    assert second["epochs"] == [1, 2]  # exactly one epoch-end callback per epoch: none left from trial a
    assert (tmp_path / "b" / "ultralytics" / "results.csv").is_file()  # trial b writes to its own folder
