"""The one score of a trial (core/score.py) and how the analysis ranks by it (no search needed)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from segtune.analysis.ranking import best_trial, rank_trials, table_rows
from segtune.analysis.trials import TrialSummary, load_experiment
from segtune.core.record import CONFIRM_OF_KEY, CONFIRM_SEED_KEY, PreparedDataset, RunSettings
from segtune.core.score import SCORE_KEY, WINDOW_KEY, RunningScore, best_window, window_means
from segtune.core.sections import Budget, FrameworkEntry, Objective

REPO_ROOT = Path(__file__).resolve().parents[1]


def test_window_means_use_fewer_epochs_at_the_start():
    assert window_means([3.0, 6.0, 9.0, 0.0]) == [3.0, 4.5, 6.0, 5.0]
    assert window_means([], 3) == []
    assert window_means([1.0, 2.0], 1) == [1.0, 2.0]


def test_best_window_follows_mode_and_prefers_the_later_of_equal_windows():
    values = [0.0, 10.0, 2.0, 9.0, 9.0, 9.0, 1.0]
    index, score = best_window(values, "max")
    assert (index, score) == (5, 9.0)  # epochs 4-6, not the single spike at epoch 2
    assert best_window(values, "min") == (0, 0.0)
    assert best_window([0.0, 0.0, 0.0], "max") == (2, 0.0)  # ties: the later epoch, as Ray keeps checkpoints
    assert best_window([], "max") is None


def test_running_score_never_decreases_and_survives_a_restart():
    values = [1.0, 13.0, 22.0, 18.0, 2.0, 2.0, 30.0]
    running = RunningScore("max")
    scores = [running.add(v)[SCORE_KEY] for v in values]
    assert scores == sorted(scores)  # monotone: ASHA and Optuna compare like with like
    assert scores[-1] == pytest.approx(max(window_means(values)))
    resumed = RunningScore("max", values[:4])  # restored from a checkpoint after epoch 4
    rows = [resumed.add(v) for v in values[4:]]
    assert rows[-1][SCORE_KEY] == scores[-1] and rows[-1][WINDOW_KEY] == pytest.approx((2 + 2 + 30) / 3)
    losses = RunningScore("min")
    assert [losses.add(v)[SCORE_KEY] for v in (5.0, 3.0, 4.0, 9.0)] == [5.0, 4.0, 4.0, 4.0]


# ---- ranking by score on a hand-written experiment ---------------------------------------------------
def _experiment(
    tmp_path: Path, trials: dict[str, list[float]], marks: dict[str, dict] | None = None, max_epochs: int = 7
) -> Path:
    """An experiment as runners/tune.py leaves it (settings + one result.json per trial), without Ray."""
    dataset = PreparedDataset(
        "demo", "0" * 64, tmp_path / "t.json", tmp_path, tmp_path / "v.json", tmp_path, (1,), ("shape",)
    )
    exp = tmp_path / "exp"
    exp.mkdir()
    space = {
        "source": "",
        "searched": {
            "lr0": {"name": "FloatDistribution", "attributes": {"low": 0.001, "high": 0.1, "log": True, "step": None}}
        },
        "fixed": {"seed": 0},
    }
    RunSettings(
        dataset,
        (FrameworkEntry("yolo", models=("yolo11n-seg.yaml",), space=space),),
        space,
        Objective("segm/AP", "max"),
        Budget(max_epochs, num_samples=None),
    ).save(exp)
    for n, (trial_id, values) in enumerate(trials.items()):
        trial = exp / f"trial_{trial_id}"
        (trial / "checkpoint_000000").mkdir(parents=True)
        (trial / "checkpoint_000000" / "last.pt").write_bytes(b"x")
        config = {"lr0": 0.01 * (n + 1), "seed": 0, **(marks or {}).get(trial_id, {})}
        (trial / "params.json").write_text(json.dumps(config))
        running = RunningScore("max")
        rows = [
            {
                "training_iteration": e,
                "epoch": e,
                "segm/AP": v,
                "bbox/AP": v,
                **running.add(v),
                "done": e == len(values),
                "checkpoint_dir_name": "checkpoint_000000",
            }
            for e, v in enumerate(values, 1)
        ]
        (trial / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return exp


def test_best_epoch_and_best_score_disagree(tmp_path):
    # spike: its best epoch (30 at epoch 2) beats every epoch of steady, its score does not
    exp = _experiment(
        tmp_path, {"spike": [0.0, 30.0, 0.0, 1.0, 2.0, 1.0, 0.0], "steady": [10.0, 18.0, 20.0, 21.0, 19.0, 20.0, 21.0]}
    )
    experiment = load_experiment(exp)
    best = best_trial(experiment.trials)
    assert best.trial_id == "steady" and best.best_value == pytest.approx(20.0) and best.best_epoch == 7
    spike = next(t for t in experiment.trials if t.trial_id == "spike")
    assert spike.best_value == pytest.approx(15.0) and spike.best_epoch == 2 and spike.rank == 2
    assert best.best_metrics["segm/AP"] == 21.0  # the metrics of the epoch that ends the best window
    proc = subprocess.run(
        [sys.executable, "analysis/rank.py", str(exp), "--out", str(tmp_path / "rank")],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    with open(tmp_path / "rank" / "ranking.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["trial"] for r in rows] == ["steady", "spike"]
    assert float(rows[0]["score"]) == pytest.approx(20.0) and float(rows[1]["segm/AP@best"]) == 30.0


def test_confirmed_configurations_rank_first_by_the_mean_of_their_new_seeds(tmp_path):
    # "lucky" won the search, but its two new seeds average below those of "solid", the runner-up
    trials = {
        "lucky": [20, 30, 31, 32],
        "solid": [20, 25, 26, 27],
        "other": [5, 6, 7, 8],
        "l1": [10, 12, 14, 15],
        "l2": [10, 13, 13, 16],
        "s1": [20, 24, 25, 26],
        "s2": [18, 23, 24, 24],
    }
    marks = {
        "l1": {CONFIRM_OF_KEY: "lucky", CONFIRM_SEED_KEY: 1},
        "l2": {CONFIRM_OF_KEY: "lucky", CONFIRM_SEED_KEY: 2},
        "s1": {CONFIRM_OF_KEY: "solid", CONFIRM_SEED_KEY: 1},
        "s2": {CONFIRM_OF_KEY: "solid", CONFIRM_SEED_KEY: 2},
    }
    exp = load_experiment(
        _experiment(tmp_path, {k: [float(v) for v in vs] for k, vs in trials.items()}, marks, max_epochs=4)
    )
    assert [t.trial_id for t in exp.trials] == ["s1", "s2", "solid", "l2", "l1", "lucky", "other"]
    assert best_trial(exp.trials).trial_id == "s1"  # the best seed of the best confirmed configuration
    assert "seed" not in exp.searched and CONFIRM_OF_KEY not in exp.trials[0].params
    rows = {r["trial"]: r for r in table_rows(exp.trials, "segm/AP", exp.searched)}
    solid = [25.0, (23 + 24 + 24) / 3]
    assert rows["solid"]["segm/AP mean"] == pytest.approx(sum(solid) / 2) and rows["s2"]["seeds"] == 2
    assert rows["solid"]["segm/AP sd"] == pytest.approx(abs(solid[0] - solid[1]) / 2**0.5)
    assert rows["other"]["segm/AP mean"] is None and rows["l1"]["confirm_of"] == "lucky"


def test_trials_without_a_value_rank_last_and_confirmations_without_seeds_rank_as_trials():
    def trial(trial_id, value, confirm_of=None, status="finished"):
        return TrialSummary(trial_id, Path(trial_id), status, "", best_value=value, epochs=3, confirm_of=confirm_of)

    trials = [trial("a", 1.0), trial("b", 3.0), trial("c", 2.0, confirm_of="a", status="running"), trial("d", None)]
    assert [t.trial_id for t in rank_trials(trials, "max")] == ["b", "c", "a", "d"]


def test_summary_names_the_confirmed_winner_and_weighs_its_lead_against_the_seed_spread(tmp_path):
    from types import SimpleNamespace

    from segtune.runners.view.summary import summarize

    trials = {
        "a": [20, 22, 24],
        "b": [10, 12, 14],
        "a1": [20, 21, 22],
        "a2": [19, 20, 21],
        "b1": [10, 11, 12],
        "b2": [13, 14, 15],
    }
    marks = {f"{o}{i}": {CONFIRM_OF_KEY: o, CONFIRM_SEED_KEY: i} for o in "ab" for i in (1, 2)}
    exp = _experiment(tmp_path, {k: [float(v) for v in vs] for k, vs in trials.items()}, marks, max_epochs=3)
    status, text = summarize([SimpleNamespace(metrics={}, error=None)] * 6, RunSettings.load(exp), exp)
    assert status == 0
    assert "2 search trials: 2 finished\n4 confirmation trials: 4 finished" in text
    assert "best configuration: trial_a, confirmed with new seeds: score 20.50 +- 0.71 over 2 seeds" in text
    assert "lead over the runner-up (trial_b) is 8.00" in text and "larger than the spread between seeds" in text
    assert "best trial: trial_a1 (seed #1 of trial_a's configuration)" in text
