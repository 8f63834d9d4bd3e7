"""Real searches and their Optuna studies: intermediate values, end reasons, a grown search,
options refused on --resume, a warm start that runs out of time budget (about 3 minutes)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from conftest import REPO_ROOT, YOLO_TEST_SPACE
from fault_hooks import fault_env
from optuna.trial import TrialState

from segtune.analysis.trials import load_experiment, read_results
from segtune.core.record import RunSettings
from segtune.runners.command import main

pytestmark = pytest.mark.e2e


def _study(experiment: Path) -> optuna.Study:
    settings = RunSettings.load(experiment)
    return optuna.load_study(study_name=settings.study.name, storage=settings.study_url(experiment))


def _own(study: optuna.Study) -> dict[str, optuna.trial.FrozenTrial]:
    """segtune trial id -> study trial, warm-start trials left out."""
    return {t.user_attrs["segtune_trial_id"]: t for t in study.trials if "segtune_trial_id" in t.user_attrs}


def _trial_ids(experiment: Path) -> set[str]:
    return {p.name.removeprefix("trial_") for p in experiment.glob("trial_*") if p.is_dir()}


def check_study_matches_trials(experiment: Path) -> dict[str, optuna.trial.FrozenTrial]:
    """Every trial of the experiment is in its study once, with one intermediate value per epoch
    (the Tune metric the study optimises, as result.json has it) and a state that fits its end."""
    study = _study(experiment)
    own = _own(study)
    ran = {tid: t for tid, t in own.items() if t.user_attrs.get("end_reason") != "abandoned"}
    assert set(ran) == _trial_ids(experiment)
    assert len([t for t in study.trials if t.user_attrs.get("segtune_trial_id") in ran]) == len(ran)  # once each
    assert not [t for t in study.trials if t.state == TrialState.RUNNING]
    objective = study.user_attrs["objective"]
    for trial_id, trial in ran.items():
        trial_dir = experiment / f"trial_{trial_id}"
        results = trial_dir / "result.json"  # none when the time budget ended the trial before its first epoch
        lines = results.read_text().splitlines() if results.exists() else []
        rows = [json.loads(line) for line in lines if line.strip()]
        by_epoch: dict[int, set[float]] = {}
        for row in rows:  # a resumed trial may repeat an epoch: either value may be the study's
            if not row.get("segtune/diverged"):
                by_epoch.setdefault(row["training_iteration"], set()).add(row[objective])
        assert set(trial.intermediate_values) == set(by_epoch), trial_id
        assert all(v in by_epoch[step] for step, v in trial.intermediate_values.items()), trial_id
        reason = json.loads((trial_dir / "end_reason.json").read_text())["reason"]
        assert trial.user_attrs["end_reason"] == reason
        state = {
            "finished": TrialState.COMPLETE,
            "framework": TrialState.COMPLETE,
            "asha": TrialState.PRUNED,
            "time_budget": TrialState.PRUNED if by_epoch else TrialState.FAIL,  # nothing to rank it by
            "diverged": TrialState.FAIL,
            "failed": TrialState.FAIL,
        }[reason]
        assert trial.state == state, (trial_id, reason, trial.state)
        if state == TrialState.COMPLETE:
            assert trial.value == read_results(trial_dir)[-1][objective]
        assert json.loads((trial_dir / "optuna_trial.json").read_text())["number"] == trial.number
        assert trial.user_attrs["trial_dir"] == str(trial_dir)
    return own


# ---- ASHA's cuts in the shared search --------------------------------------------------------------
def test_asha_stopped_trials_reach_optuna_as_pruned_with_every_epoch(yolo_experiment):
    own = check_study_matches_trials(yolo_experiment)
    pruned = [t for t in own.values() if t.state == TrialState.PRUNED]
    assert pruned and all(t.user_attrs["end_reason"] == "asha" for t in pruned)
    max_epochs = RunSettings.load(yolo_experiment).budget.max_epochs
    for trial in pruned:  # the epoch ASHA cut it at is there too (Ray never hands it to on_trial_result)
        assert max(trial.intermediate_values) == trial.user_attrs["epochs"] < max_epochs
        assert trial.value == trial.intermediate_values[max(trial.intermediate_values)]


# ---- a small search, grown ---------------------------------------------------------------------------
def _tune(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "runners/tune.py", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )


@pytest.fixture(scope="module")
def grown(tmp_path_factory, tiny_demo_data) -> dict:
    """2 trials of 2 epochs (the first trial's training ends by itself after epoch 1, as a
    framework's own early stopping ends it), then `--resume --num-samples 3`."""
    storage = tmp_path_factory.mktemp("study-runs")
    (storage / "space.yaml").write_text(YOLO_TEST_SPACE)
    common = ["--framework", "yolo", "--storage", str(storage), "--name", "small"]
    first = _tune(
        *common,
        "--data",
        str(tiny_demo_data),
        "--space",
        str(storage / "space.yaml"),
        "--num-samples",
        "2",
        "--max-epochs",
        "2",
        "--grace-period",
        "2",
        "--metric",
        "yolo/val/seg_loss",
        "--cpus-per-trial",
        "1",
        "--cache-dir",
        str(storage / "cache"),
        env=fault_env("stop@2:first"),
    )
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    experiment = storage / "small"
    before = {tid: (experiment / f"trial_{tid}" / "result.json").read_text() for tid in _trial_ids(experiment)}
    numbers = {tid: t.number for tid, t in _own(_study(experiment)).items()}
    second = _tune(*common, "--resume", "--num-samples", "3")
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    return {"experiment": experiment, "first": first, "second": second, "before": before, "numbers": numbers}


def test_the_study_holds_every_trial_with_its_epochs(grown):
    experiment = grown["experiment"]
    assert f"optuna-dashboard sqlite:///{experiment}/optuna.db" in grown["first"].stdout
    own = check_study_matches_trials(experiment)
    assert len(own) == 3
    reasons = sorted(t.user_attrs["end_reason"] for t in own.values())
    assert reasons == ["finished", "finished", "framework"]
    assert all(t.user_attrs["framework"] == "yolo" for t in own.values())


def test_resume_with_more_samples_grows_the_search(grown):
    experiment = grown["experiment"]
    assert len(_trial_ids(experiment)) == 3 and RunSettings.load(experiment).budget.num_samples == 3
    for tid, text in grown["before"].items():  # the first run's trials are kept, not run again
        assert (experiment / f"trial_{tid}" / "result.json").read_text() == text
    assert {tid: t.number for tid, t in _own(_study(experiment)).items() if tid in grown["numbers"]} == grown["numbers"]
    assert "3 trials in all" in grown["second"].stdout


def test_a_framework_early_stop_is_not_called_asha(grown, tmp_path):
    assert "1 stopped by the framework's early stopping" in grown["first"].stdout
    stopped = [t for t in load_experiment(grown["experiment"]).trials if t.end_reason == "framework"]
    assert len(stopped) == 1 and stopped[0].epochs == 1 and stopped[0].status == "stopped"
    assert stopped[0].detail == "stopped early by the framework itself (its own early stopping) at epoch 1 of 2"
    rank = subprocess.run(
        [sys.executable, "analysis/rank.py", str(grown["experiment"]), "--out", str(tmp_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert rank.returncode == 0 and "stopped by framework at epoch 1" in rank.stdout


@pytest.mark.parametrize(
    "option", [["--max-epochs", "5"], ["--max-failures", "2"], ["--num-samples", "2"], ["--data", "elsewhere"]]
)
def test_resume_refuses_a_changed_option_in_one_line(grown, option, capsys):
    """In this process (the refusal comes before Ray starts): a subprocess would cost seconds each."""
    experiment = grown["experiment"]
    record = (experiment / "segtune.json").read_text()
    status = main(
        ["--framework", "yolo", "--storage", str(experiment.parent), "--name", experiment.name, "--resume", *option],
        prog="tune.py",
    )
    out, err = capsys.readouterr()
    assert status == 2, out[-2000:] + err[-2000:]
    assert err.strip().count("\n") == 0 and option[0] in err, err
    assert (experiment / "segtune.json").read_text() == record


# ---- a warm start that runs out of time, resumed with a new budget and more samples ------------------
@pytest.fixture(scope="module")
def warm(grown, tiny_demo_data) -> dict:
    source = grown["experiment"]
    storage = source.parent
    (storage / "studies").mkdir()
    proc = _tune(
        "--framework",
        "yolo",
        "--data",
        str(tiny_demo_data),
        "--space",
        str(storage / "space.yaml"),
        "--num-samples",
        "2",
        "--max-epochs",
        "2",
        "--metric",
        "yolo/val/seg_loss",
        "--cpus-per-trial",
        "1",
        "--storage",
        str(storage),
        "--name",
        "warm",
        "--cache-dir",
        str(storage / "cache"),
        "--warm-start",
        str(source),
        "--time-budget",
        "0.01",
        "--study-storage",
        f"sqlite:///{storage / 'studies' / 'all.db'}",
    )  # any RDB URL; SQLite here
    return {"source": source, "experiment": storage / "warm", "proc": proc}


def test_warm_start_and_a_time_budget_spent_before_any_epoch(warm):
    proc, source, experiment = warm["proc"], warm["source"], warm["experiment"]
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr + proc.stdout
    assert proc.stderr.strip().splitlines()[-1].startswith("the time budget (0.01 s) ran out before any trial reported")
    assert "warm start: 3 trials from small; the best 1 configuration run first" in proc.stdout

    assert not (experiment / "optuna.db").exists()
    assert f"optuna-dashboard sqlite:///{experiment.parent / 'studies' / 'all.db'}" in proc.stdout
    study = _study(experiment)
    from_source = [t for t in study.trials if t.user_attrs.get("warm_start_from") == "small"]
    old = _study(source)
    assert sorted(t.params["lr0"] for t in from_source) == sorted(t.params["lr0"] for t in old.trials)
    best_old = min((t for t in old.trials if t.state == TrialState.COMPLETE), key=lambda t: t.value)
    first_new = next(t for t in study.trials if "warm_start_from" not in t.user_attrs)
    assert first_new.params == best_old.params  # the best earlier configuration is tried first
    check_study_matches_trials(experiment)  # trials Ray ended for the budget are not left RUNNING
    for trial in load_experiment(experiment).trials:
        assert trial.end_reason == "time_budget" and trial.short_status == "stopped by time budget before epoch 1"


def test_resume_takes_a_new_time_budget_and_grows_a_search_the_budget_ended(warm):
    """Ray would put back the spent budget of the first run, and its concurrency limiter would still
    count the trials the budget ended as running: no trial would ever start."""
    experiment = warm["experiment"]
    before = _trial_ids(experiment)
    proc = _tune(
        "--framework",
        "yolo",
        "--storage",
        str(experiment.parent),
        "--name",
        experiment.name,
        "--resume",
        "--num-samples",
        "3",
        "--time-budget",
        "600",
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    new = _trial_ids(experiment) - before
    assert len(new) == 1 and len(_trial_ids(experiment)) == 3
    (trial,) = [t for t in load_experiment(experiment).trials if t.trial_id in new]
    assert trial.status == "finished" and trial.epochs == 2
    own = check_study_matches_trials(experiment)
    assert sorted(t.user_attrs["end_reason"] for t in own.values()) == ["finished", "time_budget", "time_budget"]
    assert RunSettings.load(experiment).budget.time_budget == 600
