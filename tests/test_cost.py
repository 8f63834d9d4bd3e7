"""The cost of every trial (runners/trial/cost.py) and the accuracy-latency trade-off in rank, report and export.

The real measurements come from the session's YOLO search (`yolo_experiment`); the torchvision and
Detectron2 searches check theirs in test_e2e_maskrcnn.py (`check_cost_rows`). Choosing trials by
latency is tested on a copy whose AP and latency are rewritten, so that the expected choice is known.
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import check_cost_rows

from segtune.cocodata.results import ImageRecord
from segtune.runners.trial.cost import TrialCost, timing_image
from segtune.trainers.base import TimedInference

REPO_ROOT = Path(__file__).resolve().parents[1]


def _run(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, script, *map(str, args)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def _rows(trial: Path) -> list[dict]:
    return [json.loads(line) for line in (trial / "result.json").read_text().splitlines() if line.strip()]


def _trials(experiment: Path) -> list[Path]:
    return sorted(p for p in experiment.iterdir() if p.is_dir() and p.name.startswith("trial_"))


# ---- the measuring schedule, without a framework ----------------------------------------------------
class _TinyModel:
    """Just what TrialCost asks of an adapter: val images and a timed inference."""

    def __init__(self) -> None:
        import torch

        self.network = torch.nn.Linear(64, 64)
        self.val_images = [
            ImageRecord(i, Path(f"{i}.png"), w, h)
            for i, (w, h) in enumerate([(64, 64), (640, 480), (32, 32), (128, 128), (96, 96)])
        ]
        self.measured: list[ImageRecord] = []

    @contextlib.contextmanager
    def single_image_inference(self, image: ImageRecord):
        import torch

        self.measured.append(image)
        x = torch.ones(1, 64)
        yield TimedInference(lambda: int(self.network(x).sum() != 0), self.network, 64 * 64 + 64)


def test_latency_is_measured_at_doubling_epochs_and_carried_across_a_resume(tmp_path):
    model = _TinyModel()
    cost = TrialCost(model, "cpu")
    rows = {}
    for epoch in range(1, 6):
        cost.epoch_trained()
        rows[epoch] = cost.metrics(epoch)
        if epoch == 3:
            cost.save(tmp_path)  # the checkpoint of epoch 3
        cost.training_resumes()
    assert [rows[e]["cost/latency_epoch"] for e in rows] == [1, 2, 2, 4, 4]
    assert len(model.measured) == 3 and {im.image_id for im in model.measured} == {4}  # median area: 96x96
    row = rows[5]
    assert row["cost/params_m"] == pytest.approx(4160 / 1e6) and row["cost/latency_ms"] > 0
    assert row["cost/fps"] == pytest.approx(1000 / row["cost/latency_ms"])
    assert row["cost/train_time_s"] >= row["cost/epoch_time_s"] > 0 and row["cost/train_mem_mb"] > 0
    assert row["cost/device"].startswith("cpu") and row["segtune/cost_time_s"] > 0
    assert row["cost/infer_mem_mb"] >= 4160 * 4 / 2**20  # at least the weights

    resumed = TrialCost(model, "cpu")  # a retried trial restarts from the epoch-3 checkpoint
    resumed.restore(tmp_path)
    resumed.epoch_trained()
    row = resumed.metrics(4)
    assert row["cost/latency_epoch"] == 4 and len(model.measured) == 4
    assert row["cost/train_time_s"] > rows[3]["cost/train_time_s"]


def test_costs_are_minimised_and_fps_maximised_by_default():
    from segtune.core.record import default_mode

    assert [default_mode(k) for k in ("cost/latency_ms", "cost/train_mem_mb", "cost/fps", "segm/AP")] == [
        "min",
        "min",
        "max",
        "max",
    ]


def test_timing_image_is_the_median_by_pixels():
    images = [ImageRecord(i, Path(""), w, h) for i, (w, h) in enumerate([(10, 10), (30, 30), (20, 20)])]
    assert timing_image(images).image_id == 2


# ---- a real search ----------------------------------------------------------------------------------
@pytest.mark.e2e
def test_yolo_trials_record_their_costs(yolo_experiment):
    import torch

    for trial in _trials(yolo_experiment):
        rows = _rows(trial)
        latest = sorted(trial.glob("checkpoint_*"))[-1] / "last.pt"
        checkpoint = torch.load(latest, map_location="cpu", weights_only=False)
        model = checkpoint.get("ema") or checkpoint["model"]
        check_cost_rows(rows, parameters=sum(p.numel() for p in model.parameters()))


@pytest.mark.e2e
def test_costs_reach_tensorboard(yolo_experiment):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    trial = _trials(yolo_experiment)[0]
    acc = EventAccumulator(str(next(trial.glob("events.out.tfevents.*"))))
    acc.Reload()
    for key in ("cost/latency_ms", "cost/train_mem_mb", "cost/params_m"):
        assert len(acc.Scalars(f"ray/tune/{key}")) == len(_rows(trial))


# ---- choosing by latency: rank, report, export --------------------------------------------------------
# (segm/AP, latency ms) per trial, in trial-directory order: the first three are the front, the
# fourth is slower and less accurate than the first.
CHOSEN = [(30.0, 50.0), (20.0, 10.0), (10.0, 5.0), (25.0, 60.0)]


@pytest.fixture(scope="module")
def priced_experiment(yolo_experiment, tmp_path_factory) -> tuple[Path, list[str]]:
    target = tmp_path_factory.mktemp("priced") / "priced-exp"
    shutil.copytree(yolo_experiment, target)
    trials = _trials(target)[:4]
    assert len(trials) == 4
    for trial, (ap, latency) in zip(trials, CHOSEN):
        rows = _rows(trial)
        for row in rows:
            row.update({"segm/AP": ap, "cost/latency_ms": latency, "cost/fps": 1000 / latency})
        (trial / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return target, [t.name.removeprefix("trial_") for t in trials]


@pytest.mark.e2e
def test_rank_marks_the_front_and_shows_costs(priced_experiment, tmp_path):
    experiment, ids = priced_experiment
    proc = _run("analysis/rank.py", experiment, "--metric", "segm/AP", "--out", tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "latency ms" in proc.stdout and "params M" in proc.stdout and "pareto" in proc.stdout
    with open(tmp_path / "ranking.csv", newline="") as f:
        rows = {r["trial"]: r for r in csv.DictReader(f)}
    assert [rows[i]["pareto"] for i in ids] == ["yes", "yes", "yes", ""]
    assert float(rows[ids[1]]["cost/latency_ms"]) == 10.0 and float(rows[ids[1]]["cost/params_m"]) > 0
    assert "cost/train_mem_mb" in (tmp_path / "ranking.md").read_text()
    only_front = _run("analysis/rank.py", experiment, "--metric", "segm/AP", "--out", tmp_path, "--pareto")
    assert all(i in only_front.stdout for i in ids[:3]) and ids[3] not in only_front.stdout


@pytest.mark.e2e
def test_report_plots_the_front(priced_experiment, tmp_path):
    experiment, ids = priced_experiment
    proc = _run("analysis/report.py", experiment, "--metric", "segm/AP", "--out", tmp_path)
    assert proc.returncode == 0, proc.stderr
    page = (tmp_path / "report.html").read_text()
    section = page[page.index("Accuracy against latency") :]
    assert (tmp_path / "pareto.png").stat().st_size > 1000 and "data:image/png;base64," in section
    assert all(i in section for i in ids[:3])


@pytest.mark.e2e
def test_export_the_best_trial_under_a_latency_limit(priced_experiment, tmp_path):
    experiment, ids = priced_experiment
    out = tmp_path / "fast"
    # 45 ms: the most accurate trial (50 ms) and the fourth (60 ms) are too slow; 20 AP beats 10 AP
    proc = _run(
        "analysis/export_best.py",
        experiment,
        "--metric",
        "segm/AP",
        "--max-latency-ms",
        "45",
        "--out",
        out,
        "--no-onnx",
    )
    assert proc.returncode == 0, proc.stderr
    assert f"exported trial {ids[1]}" in proc.stdout
    card = (out / "MODEL_CARD.md").read_text()
    assert f"trial {ids[1]}" in card and "| latency (ms per image, batch 1) | 10.0 |" in card
    assert "parameters (millions)" in card and "peak training memory (MB)" in card and "measured on | cpu" in card

    too_fast = _run(
        "analysis/export_best.py",
        experiment,
        "--metric",
        "segm/AP",
        "--max-latency-ms",
        "1",
        "--out",
        tmp_path / "none",
    )
    assert too_fast.returncode == 2 and len(too_fast.stderr.strip().splitlines()) == 1
    assert f"the fastest, trial {ids[2]}, takes 5.00 ms" in too_fast.stderr
    assert not (tmp_path / "none").exists()


@pytest.mark.e2e
def test_export_every_trial_on_the_front(priced_experiment, tmp_path):
    experiment, ids = priced_experiment
    proc = _run(
        "analysis/export_best.py",
        experiment,
        "--metric",
        "segm/AP",
        "--pareto",
        "--out",
        tmp_path / "front",
        "--no-onnx",
    )
    assert proc.returncode == 0, proc.stderr
    folders = sorted(p.name for p in (tmp_path / "front").iterdir())
    assert folders == sorted(f"trial_{i}" for i in ids[:3])
    for i in ids[:3]:
        assert f"trial_{i}/" in proc.stdout
        card = (tmp_path / "front" / f"trial_{i}" / "MODEL_CARD.md").read_text()
        assert "on the Pareto front of segm/AP" in card and (tmp_path / "front" / f"trial_{i}" / "weights").is_dir()


@pytest.mark.e2e
def test_experiments_without_costs_say_so(yolo_experiment, tmp_path):
    target = tmp_path / "old-exp"
    shutil.copytree(yolo_experiment, target, ignore=shutil.ignore_patterns("*.pt"))
    for trial in _trials(target):
        rows = [{k: v for k, v in r.items() if not k.startswith("cost/")} for r in _rows(trial)]
        (trial / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    proc = _run("analysis/rank.py", target, "--out", tmp_path / "rank")
    assert proc.returncode == 0 and "latency ms" not in proc.stdout
    for option in (["--max-latency-ms", "10"], ["--pareto"]):
        proc = _run("analysis/export_best.py", target, *option, "--out", tmp_path / "x")
        assert proc.returncode == 2 and f"drop {option[0]}" in proc.stderr, proc.stderr
