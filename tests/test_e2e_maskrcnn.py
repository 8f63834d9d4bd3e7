"""End to end: real Mask R-CNN searches (Ray Tune, Optuna, ASHA and the real framework) on tiny data.

torchvision runs everywhere; Detectron2 runs where it is importable and is skipped, with the
reason shown, where it is not (it is not on PyPI).
"""
from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

from cocodata.evaluator import METRIC_KEYS
from conftest import run_tune

pytestmark = pytest.mark.e2e
HAS_DETECTRON2 = importlib.util.find_spec("detectron2") is not None
BACKENDS = [
    "torchvision",
    pytest.param("detectron2", marks=pytest.mark.skipif(
        not HAS_DETECTRON2, reason="detectron2 is not installed (not on PyPI; build it from source to run this)")),
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


@pytest.mark.parametrize("backend", BACKENDS)
def test_search_with_a_diverging_trial_completes(tmp_path, tiny_demo_data, backend):
    space = tmp_path / "space.yaml"
    space.write_text(DIVERGING_SPACE)
    proc = run_tune(
        "--framework", "maskrcnn", "--backend", backend, "--data", str(tiny_demo_data), "--space", str(space),
        "--num-samples", "4", "--max-epochs", "2", "--grace-period", "1", "--reduction-factor", "2",
        "--seed", "1", "--confirm-top", "0",
        "--storage", str(tmp_path), "--name", "exp", "--cache-dir", str(tmp_path / "cache"),
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"backend: {backend}" in proc.stdout
    trials = sorted((tmp_path / "exp").glob("trial_*"))
    assert len(trials) == 4
    diverged: list = []
    healthy: list = []
    for trial in trials:
        rows = _rows(trial)
        for row in rows:
            assert all(math.isfinite(row[key]) for key in METRIC_KEYS)
        params = json.loads((trial / "params.json").read_text())
        (diverged if rows[-1]["segtune/diverged"] else healthy).append((params["SOLVER.BASE_LR"], rows))
    assert diverged and healthy, "expected both diverging and healthy trials"
    for lr, rows in diverged:
        assert lr == 5000.0 and rows[-1]["segtune/failure"].startswith("diverged:")
    for lr, rows in healthy:
        assert lr == 0.01 and rows[-1]["segtune/num_predictions"] >= 0
    for trial in trials:  # a healthy trial checkpointed every epoch; only best and latest are kept
        assert len(list(trial.glob("checkpoint_*"))) <= 2
    assert "best trial: trial_" in proc.stdout
