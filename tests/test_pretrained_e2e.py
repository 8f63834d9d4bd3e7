"""End to end: the default search fine-tunes the framework's COCO-pretrained weights when they are where the
framework looks, and trains from scratch, saying why in one header line, when they are not (offline).

Nothing is mocked: `python runners/tune.py` as a user runs it. "Already downloaded" is a checkpoint of the
right architecture (saved from a from-scratch model) under the file name the framework downloads, in
temporary caches (YOLO_CONFIG_DIR's settings -> weights_dir; TORCH_HOME): the user's caches are never
touched. The trials' checkpoints show that they loaded it: a tensor that training never changes (YOLO's
DFL layer; the ResNet stem that the fine-tuning space always freezes) still holds the placed file's values.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO_ROOT

pytestmark = pytest.mark.e2e


def _tune(env: dict[str, str], storage: Path, *args: str, samples: int = 2) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [
            sys.executable,
            "runners/tune.py",
            *args,
            "--num-samples",
            str(samples),
            "--max-epochs",
            "1",
            "--cpus-per-trial",
            "2",
            "--confirm-top",
            "0",
            "--storage",
            str(storage),
            "--name",
            "run",
            "--cache-dir",
            str(storage / "cache"),
        ],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, f"search failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _trial_checkpoints(experiment: Path, name: str) -> list[Path]:
    trials = sorted(p for p in experiment.iterdir() if p.is_dir() and p.name.startswith("trial_"))
    assert trials
    return [sorted(trial.glob(f"checkpoint_*/{name}"))[-1] for trial in trials]


def _one_line(stdout: str, text: str) -> str:
    lines = [line for line in stdout.splitlines() if text in line]
    assert len(lines) == 1, stdout
    return lines[0]


# ---- YOLO -------------------------------------------------------------------------------------------
@pytest.fixture
def yolo_weights_dir(tmp_path) -> tuple[dict[str, str], Path]:
    """An Ultralytics config dir of its own whose weights_dir is an empty temporary folder."""
    from ultralytics.utils import SETTINGS

    config, weights = tmp_path / "ultralytics-config", tmp_path / "weights"
    settings = config / "Ultralytics" / "settings.json"  # Ultralytics reads $YOLO_CONFIG_DIR/Ultralytics/
    settings.parent.mkdir(parents=True)
    weights.mkdir()
    settings.write_text(json.dumps({**SETTINGS.defaults, "weights_dir": str(weights)}))
    return {"YOLO_CONFIG_DIR": str(config)}, weights


def test_default_yolo_search_fine_tunes_the_weights_where_ultralytics_looks(tmp_path, tiny_demo_data, yolo_weights_dir):
    import torch
    from ultralytics import YOLO

    env, weights_dir = yolo_weights_dir
    placed = weights_dir / "yolo11n-seg.pt"
    model = YOLO("yolo11n-seg.yaml")
    dfl = model.model.model[-1].dfl.conv.weight  # frozen by Ultralytics, never trained: a fingerprint
    dfl.data += 0.5
    fingerprint = dfl.detach().clone().flatten()
    model.save(placed)

    proc = _tune(env, tmp_path / "runs", "--framework", "yolo", "--data", str(tiny_demo_data))
    header = _one_line(proc.stdout, "segtune: model ")
    assert header == (
        f"segtune: model yolo11n-seg.yaml, starting from {placed} (COCO-pretrained yolo11n-seg.pt, "
        f"found at {placed}); search space search_spaces/yolo_finetune_cpu.yaml"
    )
    assert "wanted COCO-pretrained" not in proc.stdout
    settings = json.loads((tmp_path / "runs" / "run" / "segtune.json").read_text())
    assert (settings["frameworks"][0]["models"][0], settings["frameworks"][0]["weights"]) == (
        "yolo11n-seg.yaml",
        str(placed),
    )
    assert "freeze" in settings["space"]["searched"]
    for checkpoint in _trial_checkpoints(tmp_path / "runs" / "run", "last.pt"):
        saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
        trained = (saved.get("ema") or saved["model"]).model[-1].dfl.conv.weight.float().flatten()
        assert torch.allclose(trained, fingerprint, atol=1e-3), (checkpoint, trained)


def test_default_yolo_search_without_the_weights_trains_from_scratch_and_says_why(
    tmp_path, tiny_demo_data, yolo_weights_dir
):
    from segtune.trainers.pretrained import host_reachable

    if host_reachable("https://github.com"):
        pytest.skip("this machine is online: Ultralytics would download yolo11n-seg.pt")
    if (REPO_ROOT / "yolo11n-seg.pt").exists():
        pytest.skip("a yolo11n-seg.pt in the working directory is where Ultralytics looks first")
    env, weights_dir = yolo_weights_dir
    proc = _tune(env, tmp_path / "runs", "--framework", "yolo", "--data", str(tiny_demo_data))
    header = _one_line(proc.stdout, "wanted COCO-pretrained")
    assert header == (
        f"segtune: model yolo11n-seg.yaml, from scratch (wanted COCO-pretrained yolo11n-seg.pt for "
        f"yolo11n-seg.yaml, but not in {weights_dir} and github.com cannot be reached (offline?); to "
        f"fine-tune, place the file at {weights_dir / 'yolo11n-seg.pt'} or pass --weights FILE "
        f"(--weights none: from scratch, without this note)); search space search_spaces/yolo_cpu.yaml"
    )
    settings = json.loads((tmp_path / "runs" / "run" / "segtune.json").read_text())
    assert (settings["frameworks"][0]["models"][0], settings["frameworks"][0]["weights"]) == ("yolo11n-seg.yaml", None)
    assert "freeze" not in settings["space"]["searched"]


# ---- torchvision Mask R-CNN -----------------------------------------------------------------------------
# One trial of one iteration on the smallest data: the fine-tuned ResNet-50 costs ~15x the small model on a CPU.
TV_ARGS = ("--framework", "maskrcnn", "--backend", "torchvision", "--iters-per-epoch", "1")


def test_default_torchvision_search_fine_tunes_the_weights_in_torch_hub(tmp_path, small_coco):
    import torch
    from torchvision.models.detection import maskrcnn_resnet50_fpn_v2

    hub = tmp_path / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    torch.manual_seed(1234)
    state = maskrcnn_resnet50_fpn_v2(weights=None, weights_backbone=None).state_dict()  # COCO's 91 classes
    placed = hub / "maskrcnn_resnet50_fpn_v2_coco-73cbd019.pth"
    torch.save(state, placed)
    stem = state["backbone.body.conv1.weight"]

    proc = _tune(
        {"TORCH_HOME": str(tmp_path / "torch")}, tmp_path / "runs", *TV_ARGS, "--data", str(small_coco), samples=1
    )
    header = _one_line(proc.stdout, "segtune: model ")
    assert header == (
        "segtune: model maskrcnn_resnet50_fpn_v2, starting from MaskRCNN_ResNet50_FPN_V2_Weights.COCO_V1 "
        f"(COCO-pretrained MaskRCNN_ResNet50_FPN_V2_Weights.COCO_V1, found at {placed}); search space "
        "search_spaces/maskrcnn_finetune_cpu.yaml"
    )
    settings = json.loads((tmp_path / "runs" / "run" / "segtune.json").read_text())
    assert settings["frameworks"][0]["models"] == ["maskrcnn_resnet50_fpn_v2"]
    assert settings["frameworks"][0]["weights"] == "MaskRCNN_ResNet50_FPN_V2_Weights.COCO_V1"
    for checkpoint in _trial_checkpoints(tmp_path / "runs" / "run", "checkpoint.pt"):
        saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
        assert saved["params"]["MODEL.BACKBONE.FREEZE_AT"] >= 1  # the stem is frozen: it keeps the placed values
        assert torch.equal(saved["model"]["backbone.body.conv1.weight"], stem), checkpoint


def test_default_torchvision_search_without_the_weights_trains_from_scratch_and_says_why(tmp_path, small_coco):
    from segtune.trainers.pretrained import host_reachable

    if host_reachable("https://download.pytorch.org"):
        pytest.skip("this machine is online: torchvision would download the COCO weights")
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    proc = _tune(
        {"TORCH_HOME": str(tmp_path / "torch")}, tmp_path / "runs", *TV_ARGS, "--data", str(small_coco), samples=1
    )
    header = _one_line(proc.stdout, "wanted COCO-pretrained")
    assert header == (
        "segtune: model maskrcnn_resnet18_fpn, from scratch (wanted COCO-pretrained "
        "MaskRCNN_ResNet50_FPN_V2_Weights.COCO_V1 for maskrcnn_resnet50_fpn_v2, but not in "
        f"{hub} and download.pytorch.org cannot be reached (offline?); to fine-tune, place the file at "
        f"{hub / 'maskrcnn_resnet50_fpn_v2_coco-73cbd019.pth'} or pass --weights FILE (--weights none: "
        "from scratch, without this note)); search space search_spaces/maskrcnn_cpu.yaml"
    )
    settings = json.loads((tmp_path / "runs" / "run" / "segtune.json").read_text())
    assert (settings["frameworks"][0]["models"][0], settings["frameworks"][0]["weights"]) == (
        "maskrcnn_resnet18_fpn",
        None,
    )
