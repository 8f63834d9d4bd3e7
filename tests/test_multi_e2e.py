"""End to end: a real search over two frameworks (YOLO11-seg and torchvision Mask R-CNN), and a real
multi-objective search, on tiny data: Ray Tune, Optuna and the real frameworks, then rank, report
and export as a user runs them."""

from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml
from conftest import REPO_ROOT, check_cost_rows, run_tune

from segtune.analysis.pareto import pareto_ranks
from segtune.core.choice import FRAMEWORK_KEY

pytestmark = pytest.mark.e2e
YOLO_SPACE = """framework: yolo
params:
  lr0: {type: float, low: 2.0e-3, high: 2.0e-2, log: true}
  box: {type: float, low: 4.0, high: 10.0}
  optimizer: SGD
  imgsz: 96
  batch: 16
  nbs: 16
  close_mosaic: 1
  cache: ram
"""
MASKRCNN_SPACE = """framework: maskrcnn
params:
  SOLVER.BASE_LR: {type: float, low: 2.0e-3, high: 1.0e-2, log: true}
  MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE: {type: categorical, choices: [32, 64]}
  SOLVER.IMS_PER_BATCH: 4
  SOLVER.WARMUP_ITERS: 2
  INPUT.MIN_SIZE_TRAIN: 96
  INPUT.MAX_SIZE_TRAIN: 128
  INPUT.MIN_SIZE_TEST: 96
  INPUT.MAX_SIZE_TEST: 128
"""


def _script(name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, f"analysis/{name}", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600
    )


def _rows(trial: Path) -> list[dict]:
    return [json.loads(line) for line in (trial / "result.json").read_text().splitlines() if line.strip()]


def _ranking(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def two_frameworks(tmp_path_factory, tiny_demo_data) -> tuple[Path, subprocess.CompletedProcess]:
    """3 trials of up to 2 epochs: the first two are one of each framework (enqueued), the third is
    sampled; Mask R-CNN epochs are 2 iterations (--iters-per-epoch, which YOLO does not use)."""
    storage = tmp_path_factory.mktemp("multi")
    (storage / "yolo.yaml").write_text(YOLO_SPACE)
    (storage / "maskrcnn.yaml").write_text(MASKRCNN_SPACE)
    proc = run_tune(
        "--framework",
        "yolo,maskrcnn",
        "--backend",
        "torchvision",
        "--data",
        str(tiny_demo_data),
        "--space",
        str(storage / "yolo.yaml"),
        str(storage / "maskrcnn.yaml"),
        "--model",
        "yolo=yolo11n-seg.yaml",
        "--num-samples",
        "3",
        "--max-epochs",
        "2",
        "--grace-period",
        "1",
        "--reduction-factor",
        "2",
        "--iters-per-epoch",
        "2",
        "--cpus-per-trial",
        "2",
        "--seed",
        "0",
        "--storage",
        str(storage),
        "--name",
        "both",
        "--cache-dir",
        str(storage / "cache"),
    )
    assert proc.returncode == 0, f"search failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return storage / "both", proc


def test_a_two_framework_search_trains_both_each_with_its_own_keys(two_frameworks):
    experiment, proc = two_frameworks
    assert "ASHA compares each trial with trials of its own framework" in proc.stdout
    record = json.loads((experiment / "segtune.json").read_text())
    entries = {entry["name"]: entry for entry in record["frameworks"]}
    assert len(record["frameworks"]) == 2 and set(entries) == {"yolo", "maskrcnn"}
    assert entries["maskrcnn"]["backend"] == "torchvision"
    assert entries["yolo"]["models"] == ["yolo11n-seg.yaml"]
    frameworks = []
    for trial in sorted(experiment.glob("trial_*")):
        config = json.loads((trial / "params.json").read_text())
        framework = config[FRAMEWORK_KEY]
        frameworks.append(framework)
        assert all(k.startswith((f"{framework}:", "segtune:")) for k in config), config  # its own keys only
        assert config[f"{framework}:{'SEED' if framework == 'maskrcnn' else 'seed'}"] == 0
        rows = _rows(trial)
        assert rows and rows[-1]["epoch"] <= 2
        check_cost_rows(rows)
        native = [k for k in rows[-1] if k.startswith(("yolo/", "maskrcnn/"))]
        assert native and all(k.startswith(f"{framework}/") for k in native)  # the framework that trained
    assert sorted(set(frameworks)) == ["maskrcnn", "yolo"]
    storage = optuna.storages.RDBStorage(f"sqlite:///{experiment / 'optuna.db'}")
    study = optuna.load_study(study_name="both", storage=storage)
    assert [t.user_attrs["framework"] for t in study.trials] == [t.params[FRAMEWORK_KEY] for t in study.trials]
    assert [t.params[FRAMEWORK_KEY] for t in study.trials][:2] == ["yolo", "maskrcnn"]  # one of each first


def test_rank_and_report_compare_the_frameworks(two_frameworks, tmp_path):
    experiment, _ = two_frameworks
    ranked = _script("rank.py", str(experiment), "--out", str(tmp_path / "rank"))
    assert ranked.returncode == 0, ranked.stderr
    assert "frameworks compared" in ranked.stdout
    rows = _ranking(tmp_path / "rank" / "ranking.csv")
    assert {r["framework"] for r in rows} == {"yolo", "maskrcnn"}
    for row in rows:
        assert float(row["cost/latency_ms"]) > 0 and float(row["cost/params_m"]) > 0
        assert float(row["cost/train_mem_mb"]) > 0 and row["pareto"] in ("yes", "")
        assert row["model"] in ("yolo11n-seg.yaml", "maskrcnn_resnet18_fpn")
    assert any(r["pareto"] == "yes" for r in rows)
    markdown = (tmp_path / "rank" / "ranking.md").read_text()
    assert "## Frameworks compared" in markdown and "| latency, ms per image (batch 1) |" in markdown

    report = _script("report.py", str(experiment), "--out", str(tmp_path / "report"))
    assert report.returncode == 0, report.stderr
    page = (tmp_path / "report" / "report.html").read_text()
    sections = re.findall(r'<section id="([a-z]+)"', page)
    assert sections[0] == "frameworks" and "pareto" in sections  # the comparison opens the report
    table = page[page.index('<section id="frameworks"') : page.index('<section id="ranking"')]
    assert "<th>yolo</th>" in table and "<th>maskrcnn</th>" in table
    for row in (
        "segm/AP (best trial)",
        "bbox/AP (best trial)",
        "FPS (1000 / latency)",
        "training memory, peak MB",
        "inference memory, peak MB",
        "time to train, s (to the best epoch / all its epochs)",
        "model size, M parameters",
    ):
        assert row in table
    assert (tmp_path / "report" / "pareto.png").stat().st_size > 0


def test_export_takes_the_winner_and_the_fastest_with_their_own_adapters(two_frameworks, tmp_path):
    from segtune.trainers.registry import get_adapter

    experiment, _ = two_frameworks
    ranked = _script("rank.py", str(experiment), "--out", str(tmp_path / "rank"))
    assert ranked.returncode == 0, ranked.stderr
    rows = [r for r in _ranking(tmp_path / "rank" / "ranking.csv") if r["cost/latency_ms"]]
    fastest = min(rows, key=lambda r: float(r["cost/latency_ms"]))
    for out, extra, expected in [
        (tmp_path / "best", [], rows[0]),
        (tmp_path / "fast", ["--max-latency-ms", str(float(fastest["cost/latency_ms"]) + 1e-6)], fastest),
    ]:
        proc = _script("export_best.py", str(experiment), "--out", str(out), "--no-onnx", *extra)
        assert proc.returncode == 0, proc.stderr
        assert f"exported trial {expected['trial']} ({expected['framework']}," in proc.stdout
        config = yaml.safe_load((out / "config.yaml").read_text())
        assert config["framework"] == expected["framework"] and config["model"] == expected["model"]
        adapter = get_adapter(config["framework"], config["backend"])
        adapter.check_params(config["params"])  # the framework's own keys, unprefixed
        assert "--framework " + expected["framework"] in (out / "config.yaml").read_text()
        assert (out / "native_config.yaml").is_file() and any((out / "weights").iterdir())
        assert "chosen among the frameworks yolo, maskrcnn" in (out / "MODEL_CARD.md").read_text()


def test_a_multi_objective_search_runs_without_asha_and_ranks_by_pareto_rank(tmp_path, tiny_demo_data):
    (tmp_path / "yolo.yaml").write_text(YOLO_SPACE)
    proc = run_tune(
        "--framework",
        "yolo",
        "--data",
        str(tiny_demo_data),
        "--space",
        str(tmp_path / "yolo.yaml"),
        "--objective",
        "segm/AP:max,cost/latency_ms:min",
        "--num-samples",
        "3",
        "--max-epochs",
        "2",
        "--cpus-per-trial",
        "2",
        "--seed",
        "0",
        "--storage",
        str(tmp_path),
        "--name",
        "mo",
        "--cache-dir",
        str(tmp_path / "cache"),
    )
    assert proc.returncode == 0, f"search failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert "ASHA does not apply to several objectives" in proc.stdout and "Pareto front of" in proc.stdout
    experiment = tmp_path / "mo"
    for trial in experiment.glob("trial_*"):  # nothing stopped early: every trial trained every epoch
        assert json.loads((trial / "end_reason.json").read_text())["reason"] == "finished"
        assert len(_rows(trial)) == 2
    study = optuna.load_study(study_name="mo", storage=f"sqlite:///{experiment / 'optuna.db'}")
    assert len(study.directions) == 2
    assert all(t.state == optuna.trial.TrialState.COMPLETE and len(t.values) == 2 for t in study.trials)

    ranked = _script("rank.py", str(experiment), "--out", str(tmp_path / "rank"))
    assert ranked.returncode == 0, ranked.stderr
    rows = _ranking(tmp_path / "rank" / "ranking.csv")
    points = [(float(r["segm/AP@best"]), float(r["cost/latency_ms"])) for r in rows]
    fronts = pareto_ranks(points, ["max", "min"])
    assert [int(r["pareto_rank"]) for r in rows] == fronts
    order = [(front, -ap) for front, (ap, _) in zip(fronts, points)]
    assert order == sorted(order)  # by front, then by the first objective
    exported = _script("export_best.py", str(experiment), "--out", str(tmp_path / "best"), "--no-onnx")
    assert exported.returncode == 0 and f"exported trial {rows[0]['trial']} " in exported.stdout
