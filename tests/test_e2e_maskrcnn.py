"""End to end: real Mask R-CNN searches (Ray Tune, Optuna, ASHA and the real framework) on tiny data.

torchvision runs everywhere; Detectron2 runs where it is importable and is skipped, with the
reason shown, where it is not (it is not on PyPI).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from conftest import check_cost_rows, keys_without_ground_truth, run_tune

from segtune.cocodata.evaluator import METRIC_KEYS

pytestmark = pytest.mark.e2e
HAS_DETECTRON2 = importlib.util.find_spec("detectron2") is not None
BACKENDS = [
    "torchvision",
    pytest.param(
        "detectron2",
        marks=pytest.mark.skipif(
            not HAS_DETECTRON2, reason="detectron2 is not installed (not on PyPI; build it from source to run this)"
        ),
    ),
]
# a tiny, fast corner of the real search space; one learning rate that is sure to diverge
DIVERGING_SPACE = """framework: maskrcnn
params:
  SOLVER.BASE_LR: {type: categorical, choices: [0.01, 5000.0]}
  SOLVER.IMS_PER_BATCH: 4
  SOLVER.WARMUP_ITERS: 2
  SOLVER.CLIP_GRADIENTS.ENABLED: false
  MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE: {type: categorical, choices: [32, 64]}
  INPUT.MIN_SIZE_TRAIN: 96
  INPUT.MAX_SIZE_TRAIN: 128
  INPUT.MIN_SIZE_TEST: 96
  INPUT.MAX_SIZE_TEST: 128
"""


def _rows(trial: Path) -> list[dict]:
    return [json.loads(line) for line in (trial / "result.json").read_text().splitlines() if line.strip()]


def _parameters(backend: str, trial: Path) -> int | None:
    """The trained model's parameter count (torchvision: the architecture its checkpoint records, rebuilt)."""
    if backend != "torchvision":
        return None
    import torch

    from segtune.trainers.maskrcnn.torchvision.models import build_model

    state = torch.load(sorted(trial.glob("checkpoint_*"))[-1] / "checkpoint.pt", map_location="cpu", weights_only=True)
    model, _ = build_model(
        state["model_name"],
        num_classes=state["num_classes"],
        params=state["params"],
        weights=None,
        max_detections=100,
        load_weights=False,
    )
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("backend", BACKENDS)
def test_search_with_a_diverging_trial_completes(tmp_path, tiny_demo_data, backend):
    space = tmp_path / "space.yaml"
    space.write_text(DIVERGING_SPACE)
    proc = run_tune(
        "--framework",
        "maskrcnn",
        "--backend",
        backend,
        "--data",
        str(tiny_demo_data),
        "--space",
        str(space),
        "--num-samples",
        "4",
        "--max-epochs",
        "2",
        "--grace-period",
        "1",
        "--reduction-factor",
        "2",
        "--iters-per-epoch",
        "2",
        "--seed",
        "1",
        "--confirm-top",
        "0",  # epochs of 2 iterations, not 8
        "--storage",
        str(tmp_path),
        "--name",
        "exp",
        "--cache-dir",
        str(tmp_path / "cache"),
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"backend: {backend}" in proc.stdout
    trials = sorted((tmp_path / "exp").glob("trial_*"))
    assert len(trials) == 4
    diverged: list = []
    healthy: list = []
    no_ground_truth = keys_without_ground_truth(tiny_demo_data / "annotations" / "instances_val.json")
    for trial in trials:
        rows = _rows(trial)
        params = json.loads((trial / "params.json").read_text())
        (diverged if rows[-1]["segtune/diverged"] else healthy).append((params["SOLVER.BASE_LR"], rows))
        if not rows[-1]["segtune/diverged"]:
            check_cost_rows(rows, parameters=_parameters(backend, trial))
    assert diverged and healthy, "expected both diverging and healthy trials"
    for lr, rows in diverged:  # the closing row: the reason, and the worst score instead of NaN
        assert lr == 5000.0 and rows[-1]["segtune/failure"].startswith("diverged:")
        assert all(rows[-1][key] == 0.0 for key in METRIC_KEYS), rows[-1]
    for lr, rows in healthy:
        assert lr == 0.01
        for row in rows:  # an untrained Mask R-CNN still detects something above a 0.001 score
            assert row["segtune/num_predictions"] > 0, row
            for key in METRIC_KEYS:  # -1 exactly where the val split has no object of that size
                assert row[key] == -1 if key in no_ground_truth else 0 <= row[key] <= 100, (key, row)
    for trial in trials:  # a healthy trial checkpointed every epoch; only best and latest are kept
        assert len(list(trial.glob("checkpoint_*"))) <= 2
    assert "best trial: trial_" in proc.stdout
