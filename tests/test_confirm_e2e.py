"""A real search with confirmation (Ray Tune + Optuna + ASHA + Ultralytics on tiny data), and the
same best trial named by the closing summary, rank.py, report.py and export_best.py."""

from __future__ import annotations

import csv
import json
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO_ROOT, YOLO_TEST_SPACE, run_tune

from segtune.core.record import CONFIRM_OF_KEY, CONFIRM_SEED_KEY
from segtune.core.score import SCORE_KEY, best_window

pytestmark = pytest.mark.e2e
METRIC = "yolo/val/seg_loss"  # at 2 epochs every AP is still 0: a loss separates the trials
EPOCHS = 2  # enough for a running best score over epochs, and for ASHA to have a rung to stop trials at


def _run(script: str, *args) -> subprocess.CompletedProcess:
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


@pytest.fixture(scope="module")
def confirmed_experiment(tmp_path_factory, tiny_demo_data) -> tuple[Path, str]:
    storage = tmp_path_factory.mktemp("confirm-runs")
    space = storage / "space.yaml"
    space.write_text(YOLO_TEST_SPACE)
    proc = run_tune(
        "--framework",
        "yolo",
        "--data",
        str(tiny_demo_data),
        "--space",
        str(space),
        "--num-samples",
        "3",
        "--max-epochs",
        str(EPOCHS),
        "--metric",
        METRIC,
        "--confirm-top",
        "1",
        "--confirm-seeds",
        "2",
        "--seed",
        "0",
        "--storage",
        str(storage),
        "--name",
        "confirm",
        "--cache-dir",
        str(storage / "cache"),
    )
    assert proc.returncode == 0, f"search failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return storage / "confirm", proc.stdout


def _same_best_trial(experiment: Path, summary: str, tmp_path: Path) -> str:
    """The trial the summary names, checked against rank.py, report.py and export_best.py."""
    best = re.search(r"best trial: trial_(\w+)", summary).group(1)
    assert _run("analysis/rank.py", experiment, "--out", tmp_path / "rank").returncode == 0
    with open(tmp_path / "rank" / "ranking.csv", newline="") as f:
        ranking = list(csv.DictReader(f))
    assert ranking[0]["trial"] == best and ranking[0]["rank"] == "1"
    assert _run("analysis/report.py", experiment, "--out", tmp_path / "report").returncode == 0
    page = (tmp_path / "report" / "report.html").read_text()
    first_row = page[page.index("<h2>Ranking</h2>") :].split("<tr>")[2]
    assert f"<code>{best}</code>" in first_row
    export = _run("analysis/export_best.py", experiment, "--out", tmp_path / "export", "--no-onnx")
    assert export.returncode == 0, export.stderr
    assert f"exported trial {best} " in export.stdout
    assert best in (tmp_path / "export" / "MODEL_CARD.md").read_text()
    return best


def test_confirmation_trials_retrain_the_best_configuration_with_new_seeds(confirmed_experiment):
    experiment, stdout = confirmed_experiment
    assert "random proposals until 2 of 3 trials have finished" in stdout and "first trials: the framework's" in stdout
    trials = {p.name.removeprefix("trial_"): p for p in experiment.glob("trial_*")}
    params = {t: json.loads((p / "params.json").read_text()) for t, p in trials.items()}
    confirmations = {t: c for t, c in params.items() if CONFIRM_OF_KEY in c}
    search = {t: c for t, c in params.items() if CONFIRM_OF_KEY not in c}
    assert len(search) == 3 and len(confirmations) == 2
    scores = {t: _rows(trials[t])[-1][SCORE_KEY] for t in search}
    winner = min(scores, key=scores.get)  # a loss: the lowest score wins the search
    assert {c[CONFIRM_OF_KEY] for c in confirmations.values()} == {winner}
    assert sorted((c[CONFIRM_SEED_KEY], c["seed"]) for c in confirmations.values()) == [(1, 1), (2, 2)]
    for trial_id, config in confirmations.items():
        hyper = {k: v for k, v in config.items() if k not in (CONFIRM_OF_KEY, CONFIRM_SEED_KEY, "seed")}
        assert hyper == {k: v for k, v in params[winner].items() if k != "seed"}
        rows = _rows(trials[trial_id])
        assert len(rows) == EPOCHS, "a confirmation trial is never stopped early"
        assert list(trials[trial_id].glob("events.out.tfevents.*")), "no TensorBoard curves"
        values = [r[METRIC] for r in rows]
        assert rows[-1][SCORE_KEY] == pytest.approx(best_window(values, "min")[1])
        assert [r[SCORE_KEY] for r in rows] == sorted((r[SCORE_KEY] for r in rows), reverse=True)
    assert f"best configuration: trial_{winner}, confirmed with new seeds" in stdout


def test_ranking_has_mean_and_sd_of_the_new_seeds_and_every_script_names_the_same_best(confirmed_experiment, tmp_path):
    experiment, stdout = confirmed_experiment
    best = _same_best_trial(experiment, stdout, tmp_path)
    with open(tmp_path / "rank" / "ranking.csv", newline="") as f:
        ranking = list(csv.DictReader(f))
    confirmations = [r for r in ranking if r["confirm_of"]]
    scores = [float(r["score"]) for r in confirmations]
    assert [r["trial"] for r in ranking[:3]] == [r["trial"] for r in confirmations] + [confirmations[0]["confirm_of"]]
    assert best == confirmations[0]["trial"] and float(confirmations[0]["score"]) == min(scores)
    for row in ranking[:3]:
        assert float(row[f"{METRIC} mean"]) == pytest.approx(statistics.fmean(scores))
        assert float(row[f"{METRIC} sd"]) == pytest.approx(statistics.stdev(scores))
        assert row["seeds"] == "2"
    assert all(not r[f"{METRIC} mean"] for r in ranking[3:])
    card = (tmp_path / "export" / "MODEL_CARD.md").read_text()
    assert f"seed #{confirmations[0]['confirm_seed']} of the configuration of search trial" in card
    page = (tmp_path / "report" / "report.html").read_text()
    assert "<h2>Confirmed configurations</h2>" in page and "<svg" in page
    assert "one configuration confirmed" in stdout


def test_summary_rank_report_and_export_name_the_same_best_trial(yolo_experiment, tmp_path):
    summary = (yolo_experiment.parent / "yolo-e2e.stdout.txt").read_text()
    _same_best_trial(yolo_experiment, summary, tmp_path)
