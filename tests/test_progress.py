"""The search's terminal view: pure rendering on a made-up search (no Ray), and the callback's
plain output mode fed with Ray-like trial objects. The real search's output is checked in
test_e2e_yolo.py (`test_terminal_output_is_compact`)."""

from __future__ import annotations

import io
import pickle

import optuna
import pytest

from segtune.core.record import DIVERGED_KEY, FAILURE_KEY
from segtune.runners.view.progress_view import (
    MIN_TRIALS_FOR_IMPORTANCE,
    SearchView,
    end_line,
    end_reason,
    epoch_line,
    important_params,
    live_block,
    progress_line,
    start_line,
)

WIDTH = 120
SEARCHED = ["optimizer", "lr0", "lrf", "momentum", "weight_decay", "warmup_epochs", "box"]


def _result(epoch: int, segm: float, bbox: float) -> dict:
    return {"training_iteration": epoch, "segm/AP": segm, "bbox/AP": bbox}


def _params(i: int) -> dict:
    return {
        "optimizer": "AdamW" if i % 2 else "SGD",
        "lr0": 0.00124 * (i + 1),
        "lrf": 0.0611,
        "momentum": 0.852,
        "weight_decay": 4.6e-4,
        "warmup_epochs": 2.33,
        "box": 9.22,
    }


@pytest.fixture
def view() -> SearchView:
    """Eight trials of up to 30 epochs: two ended (one finished, one stopped early), one failed,
    one diverged, two running, two not started."""
    view = SearchView("segm/AP", "max", 30, 8, SEARCHED, name="yolo-20261201-040322")
    for i, (trial_id, epochs) in enumerate(
        [("aaaa0001", 30), ("aaaa0002", 9), ("aaaa0003", 2), ("aaaa0004", 3), ("aaaa0005", 12), ("aaaa0006", 4)]
    ):
        view.start(trial_id, _params(i))
        for epoch in range(1, epochs + 1):
            view.result(
                trial_id, _result(epoch, segm=epoch * (0.7 + 0.1 * i) - (3 if epoch == epochs else 0), bbox=epoch * 0.9)
            )
    view.end(
        "aaaa0001",
        end_reason(error=None, last_result={"training_iteration": 30}, max_epochs=30),
        failed=False,
        at=200.0,
    )
    view.end(
        "aaaa0002", end_reason(error=None, last_result={"training_iteration": 9}, max_epochs=30), failed=False, at=95.0
    )
    view.end(
        "aaaa0003",
        end_reason(
            error="RuntimeError: injected fault at epoch 3", last_result={"training_iteration": 2}, max_epochs=30
        ),
        failed=True,
        at=40.0,
    )
    diverged = {
        "training_iteration": 4,
        DIVERGED_KEY: 1,
        FAILURE_KEY: "diverged: loss is nan at iteration 37",
        "segm/AP": 0.0,
    }
    view.result("aaaa0004", diverged)
    view.end("aaaa0004", end_reason(error=None, last_result=diverged, max_epochs=30), failed=False, at=60.0)
    return view


def test_end_reasons():
    assert end_reason(error=None, last_result={"training_iteration": 30}, max_epochs=30) == "finished 30/30"
    assert end_reason(error=None, last_result={"training_iteration": 9}, max_epochs=30) == "stopped early 9/30"
    assert (
        end_reason(error="OSError: disk full", last_result={"training_iteration": 2}, max_epochs=30)
        == "failed in epoch 3: OSError: disk full"
    )
    assert (
        end_reason(
            error=None,
            last_result={"training_iteration": 4, DIVERGED_KEY: 1, FAILURE_KEY: "diverged: loss is inf"},
            max_epochs=30,
        )
        == "diverged: loss is inf"
    )
    assert (
        end_reason(
            error=None,
            last_result={"training_iteration": 7},
            max_epochs=30,
            stopped_by_search="the time budget ran out",
        )
        == "stopped at 7/30 (the time budget ran out)"
    )


def test_state_tracks_best_latest_and_budget(view):
    running = {t.name: t for t in view.running}
    assert set(running) == {"trial_aaaa0005", "trial_aaaa0006"}
    trial = running["trial_aaaa0005"]
    assert (trial.epoch, trial.best_epoch) == (12, 11)  # the last epoch fell by 3
    assert trial.best == pytest.approx(11 * 1.1) and trial.latest == pytest.approx(12 * 1.1 - 3)
    assert trial.bbox_at_best == pytest.approx(11 * 0.9)
    diverged = view.trials["aaaa0004"]
    assert diverged.epoch == 4 and diverged.latest == pytest.approx(3 * 1.0 - 3)  # the placeholder row is no score
    assert view.epochs_done == 30 + 9 + 2 + 4 + 12 + 4
    assert view.epoch_budget == 30 + 9 + 2 + 4 + 4 * 30  # ended trials count what they ran
    assert view.leader().name == "trial_aaaa0001"


def test_plain_lines_fit_and_say_what_happened(view):
    lines = [
        start_line(view, view.trials["aaaa0005"], 61, WIDTH),
        epoch_line(view, view.trials["aaaa0005"], 62, WIDTH),
        progress_line(view, 240.0, WIDTH),
    ]
    lines += [end_line(view, t, WIDTH) for t in view.ended]
    assert all(len(line) <= WIDTH for line in lines), [len(line) for line in lines]
    start, epoch, progress, finished, stopped, failed, diverged = lines
    assert start == "[ 1:01] trial_aaaa0005 started  optimizer=SGD lr0=0.0062 lrf=0.0611 momentum=0.852"
    assert "epoch 12/30" in epoch and "segm/AP 10.20" in epoch and "best 12.10@11 (bbox 9.90)" in epoch
    assert "61/<=165 epochs (37%), ETA <=" in progress and "4/8 ended (1 failed), 2 running" in progress
    assert progress.endswith("best segm/AP 20.30@29: trial_aaaa0001")
    assert finished == (
        "[ 3:20] trial_aaaa0001 finished 30/30  best 20.30@29 (bbox 26.10)  "
        "optimizer=SGD lr0=0.00124 lrf=0.0611 momentum=0.852"
    )
    assert "stopped early 9/30  best 6.40@8" in stopped and "optimizer=AdamW" in stopped
    assert failed == "[ 0:40] trial_aaaa0003 failed in epoch 3: RuntimeError: injected fault at epoch 3"
    assert "diverged: loss is nan at iteration 37" in diverged


def test_live_block_fits_and_shows_each_running_trial(view):
    for width in (120, 80):
        block = live_block(view, 240.0, width)
        assert all(len(line) <= width for line in block), [len(line) for line in block]
    block = live_block(view, 240.0, 120)
    title, epochs, leader, header, *rows = block
    assert title.startswith("yolo-20261201-040322 · segm/AP (max) · 4/8 ended (1 failed), 2 running")
    assert "█" in epochs and "░" in epochs and "61/≤165 epochs" in epochs and "ETA ≤" in epochs
    assert "trial_aaaa0001" in leader
    assert header.split()[:7] == ["trial", "status", "epoch", "best@ep", "bbox", "last", "optimizer"]
    assert [row.split()[:6] for row in rows] == [
        ["trial_aaaa0005", "running", "12/30", "12.10@11", "9.90", "10.20"],
        ["trial_aaaa0006", "running", "4/30", "3.60@3", "2.70", "1.80"],
    ]
    assert "lr0" in header and "SGD" in rows[0] and "0.0062" in rows[0] and "AdamW" in rows[1]
    ascii_block = live_block(view, 240.0, 120, unicode=False)
    assert all(line.isascii() for line in ascii_block[1:2])


def test_importance_needs_enough_trials_and_finds_the_parameter_that_matters():
    distributions = {
        "lr0": optuna.distributions.FloatDistribution(1e-3, 2e-2, log=True),
        "momentum": optuna.distributions.FloatDistribution(0.85, 0.95),
        "box": optuna.distributions.FloatDistribution(4.0, 10.0),
        "optimizer": optuna.distributions.CategoricalDistribution(["SGD", "AdamW"]),
    }
    view = SearchView("segm/AP", "max", 30, 64, list(distributions))
    sampler = optuna.samplers.RandomSampler(seed=0)
    study = optuna.create_study(sampler=sampler)
    for i in range(MIN_TRIALS_FOR_IMPORTANCE * 2):
        params = study.ask(distributions).params
        view.start(f"t{i}", params)
        view.result(f"t{i}", _result(1, segm=100 * params["lr0"], bbox=0.0))  # only lr0 matters
        view.end(f"t{i}", "finished", failed=False, at=0.0)
        if i == MIN_TRIALS_FOR_IMPORTANCE - 2:
            assert important_params(view, distributions) is None
    ranked = important_params(view, distributions)
    assert ranked[0] == "lr0" and len(ranked) == 4


def test_callback_plain_output_and_pickling(tmp_path, monkeypatch):
    """The callback as Ray drives it, with stand-ins for Ray's Trial (the hooks read trial_id,
    config, last_result, error_file): one start line and one end line per trial, no epoch lines."""
    from segtune.runners.view.progress import SearchProgress

    class Trial:
        def __init__(self, trial_id, config):
            self.trial_id, self.config, self.last_result, self.error_file = trial_id, config, {}, None

    distributions = {"lr0": optuna.distributions.FloatDistribution(1e-3, 2e-2, log=True)}
    progress = SearchProgress(
        metric="segm/AP", mode="max", max_epochs=3, searched=distributions, experiment_dir=str(tmp_path / "exp")
    )
    progress = pickle.loads(pickle.dumps(progress))  # Ray keeps callbacks in tuner.pkl
    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    progress.setup(total_num_samples=2)
    ok, broken = Trial("ok000001", {"lr0": 0.002, "imgsz": 128}), Trial("bad00002", {"lr0": 0.01, "imgsz": 128})
    for trial in (ok, broken):
        progress.on_trial_start(0, [], trial)
    for epoch in (1, 2, 3):
        ok.last_result = _result(epoch, segm=epoch * 2.0, bbox=epoch * 3.0)
        progress.on_trial_result(0, [], ok, ok.last_result)
    progress.on_trial_complete(0, [], ok)
    (tmp_path / "error.txt").write_text("Traceback (most recent call last):\n  ...\nRuntimeError: boom\n")
    broken.error_file, broken.last_result = str(tmp_path / "error.txt"), _result(1, 0.0, 0.0)
    progress.on_trial_error(0, [], broken)
    progress.on_experiment_end([ok, broken])
    lines = out.getvalue().splitlines()
    assert lines[0] == f"segtune: each trial's results, files and errors: {tmp_path / 'exp'}/trial_<id>/"
    assert [line.split()[2:4] for line in lines[1:3]] == [["trial_ok000001", "started"], ["trial_bad00002", "started"]]
    assert "trial_ok000001 finished 3/3  best 6.00@3 (bbox 9.00)  lr0=0.002" in lines[3]
    assert lines[4].endswith("trial_bad00002 failed in epoch 2: RuntimeError: boom")
    assert "3/<=3 epochs (100%) · 2/2 ended (1 failed), 0 running · best segm/AP 6.00@3: trial_ok000001" in lines[5]
    assert len(lines) == 6 and all(len(line) <= WIDTH for line in lines[1:])  # the first names a path: never cut


def test_callback_ranks_parameters_once_enough_trials_ended(tmp_path, monkeypatch):
    from segtune.runners.view.progress import SearchProgress

    class Trial:
        def __init__(self, trial_id, config):
            self.trial_id, self.config, self.last_result, self.error_file = trial_id, config, {}, None

    distributions = {
        "box": optuna.distributions.FloatDistribution(4.0, 10.0),
        "cls": optuna.distributions.FloatDistribution(0.3, 1.5),
        "dfl": optuna.distributions.FloatDistribution(0.5, 3.0),
        "mosaic": optuna.distributions.FloatDistribution(0.0, 1.0),
        "lr0": optuna.distributions.FloatDistribution(1e-3, 2e-2, log=True),
    }
    progress = SearchProgress(
        metric="segm/AP", mode="max", max_epochs=1, searched=distributions, experiment_dir=str(tmp_path)
    )
    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    progress.setup(total_num_samples=MIN_TRIALS_FOR_IMPORTANCE + 1)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for i in range(MIN_TRIALS_FOR_IMPORTANCE + 1):
        trial = Trial(f"t{i:07d}", study.ask(distributions).params)
        progress.on_trial_start(0, [], trial)
        trial.last_result = _result(1, segm=1000 * trial.config["lr0"], bbox=0.0)  # only lr0 matters
        progress.on_trial_result(0, [], trial, trial.last_result)
        progress.on_trial_complete(0, [], trial)
    lines = out.getvalue().splitlines()
    note = next(i for i, line in enumerate(lines) if "parameters shown from now on" in line)
    assert f"PED-ANOVA over {MIN_TRIALS_FOR_IMPORTANCE} ended trials): lr0 " in lines[note]
    assert " box=" in lines[note - 1] and " lr0=" not in lines[note - 1]  # before: the space's first four keys
    last_start = [line for line in lines if " started " in line][-1]
    assert last_start.split("started")[-1].split()[0].startswith("lr0=")  # after: the most important first
