"""Kill the driver with SIGKILL at several points of a real search, resume, and lose nothing:
not a trial, not an epoch, not a trial of the Optuna study (which must hold each trial once)."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from conftest import REPO_ROOT, run_tune
from test_study_e2e import check_study_matches_trials

pytestmark = pytest.mark.e2e
MAX_EPOCHS = 3
NUM_SAMPLES = 3


def _rows(trial_dir: Path) -> list[dict]:
    path = trial_dir / "result.json"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _trials(experiment: Path) -> list[Path]:
    return sorted(p for p in experiment.glob("trial_*") if p.is_dir())


def _start(experiment: Path, data: Path) -> subprocess.Popen:
    args = ["--framework", "yolo", "--data", str(data), "--num-samples", str(NUM_SAMPLES),
            "--max-epochs", str(MAX_EPOCHS), "--grace-period", str(MAX_EPOCHS), "--seed", "3",
            "--storage", str(experiment.parent), "--name", experiment.name,
            "--cache-dir", str(experiment.parent / "cache")]
    log = open(experiment.parent / f"{experiment.name}.log", "a")
    return subprocess.Popen([sys.executable, "runners/tune.py", *args], cwd=REPO_ROOT, stdout=log,
                            stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})


def _kill_when(proc: subprocess.Popen, condition, timeout: float = 240, before_kill=None) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, "the search ended before the kill point"
        assert time.monotonic() < deadline, "kill point never reached"
        time.sleep(0.2)
    if before_kill is not None:
        before_kill()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(2)  # let the orphaned local Ray processes notice their driver is gone


def _resume(experiment: Path) -> subprocess.CompletedProcess:
    return run_tune("--framework", "yolo", "--storage", str(experiment.parent), "--name", experiment.name,
                    "--resume", timeout=600)


def _snapshot(experiment: Path) -> dict[str, dict]:
    """The newest experiment snapshot: trial dir name -> {status, checkpointed}. Ray resumes from
    what the snapshot records: a checkpoint on disk that it does not name yet is not used, and
    that trial repeats the epochs since its last recorded checkpoint."""
    states = sorted(experiment.glob("experiment_state-*.json"))
    try:
        data = json.loads(states[-1].read_text()) if states else {"trial_data": []}
    except (OSError, ValueError):  # being replaced right now
        return {}
    trials = {}
    for trial_json, runtime_json in data["trial_data"]:
        trial, runtime = json.loads(trial_json), json.loads(runtime_json)
        manager = runtime.get("checkpoint_manager") or {}
        # Ray stores the trial's checkpoint manager cloudpickled, as hex; its paths are plain bytes in it
        pickled = bytes.fromhex(manager["value"]) if isinstance(manager, dict) and "value" in manager else b""
        checkpointed = re.search(rb"checkpoint_\d{6}", pickled) is not None
        trials[f"trial_{trial['trial_id']}"] = {"status": trial["status"], "checkpointed": checkpointed}
    return trials


@pytest.mark.parametrize("kill_point", ["trials_started", "checkpoint_recorded", "trial_finished"])
def test_kill_and_resume(tmp_path, tiny_demo_data, kill_point):
    experiment = tmp_path / "killed"
    conditions = {
        "trials_started": lambda: bool(_trials(experiment)),
        "checkpoint_recorded": lambda: any(t["checkpointed"] for t in _snapshot(experiment).values()),
        "trial_finished": lambda: any(t["status"] == "TERMINATED" for t in _snapshot(experiment).values()),
    }
    seen_running: list = []

    def read_study_while_it_runs() -> None:
        """From this process, while the driver writes: the study opens, and a trial whose checkpoint
        Ray has recorded has its first epoch in the study already (Ray hands a result to the searcher
        before it writes the snapshot)."""
        study = optuna.load_study(study_name=experiment.name, storage=f"sqlite:///{experiment / 'optuna.db'}")
        seen_running.extend(t for t in study.trials if t.intermediate_values)

    _kill_when(_start(experiment, tiny_demo_data), conditions[kill_point], before_kill=read_study_while_it_runs)
    if kill_point != "trials_started":
        assert seen_running, "no intermediate value in the study while the search ran"
    after_kill = optuna.load_study(study_name=experiment.name, storage=f"sqlite:///{experiment / 'optuna.db'}")
    assert after_kill.trials  # a killed driver leaves a readable study
    snapshot = _snapshot(experiment)
    recorded = {name for name, t in snapshot.items() if t["checkpointed"]}
    finished = {name for name, t in snapshot.items() if t["status"] == "TERMINATED"}
    before = {t.name: _rows(t) for t in _trials(experiment)}

    proc = _resume(experiment)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]

    trials = _trials(experiment)
    assert len(trials) == NUM_SAMPLES, [t.name for t in trials]  # no trial run twice, none lost
    for trial in trials:
        iterations = [row["training_iteration"] for row in _rows(trial)]
        assert sorted(set(iterations)) == list(range(1, MAX_EPOCHS + 1)), (trial.name, iterations)
        if trial.name in recorded:  # continued from its checkpoint, not from epoch 1
            assert iterations.count(1) == 1, f"{trial.name} restarted from scratch: {iterations}"
        if trial.name in finished:  # completed work is kept, not run again
            assert _rows(trial) == before[trial.name]
    if kill_point != "trials_started":
        assert recorded, "the snapshot named no checkpoint at the kill point"
    final = json.loads(sorted(experiment.glob("experiment_state-*.json"))[-1].read_text())
    assert "ERROR" not in json.dumps(final)
    # The resumed driver reconnected to the study: the trials from before the kill are in it once,
    # with the epochs they ran then and after, none left RUNNING.
    own = check_study_matches_trials(experiment)
    before_numbers = {t.user_attrs["segtune_trial_id"]: t.number for t in after_kill.trials
                      if "segtune_trial_id" in t.user_attrs}
    assert {tid: own[tid].number for tid in before_numbers} == before_numbers
