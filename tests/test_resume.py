"""Kill the driver with SIGKILL at several points of a real search, resume, and lose nothing."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO_ROOT, run_tune

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


def _kill_when(proc: subprocess.Popen, condition, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, "the search ended before the kill point"
        assert time.monotonic() < deadline, "kill point never reached"
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(2)  # let the orphaned local Ray processes notice their driver is gone


def _resume(experiment: Path) -> subprocess.CompletedProcess:
    return run_tune("--framework", "yolo", "--storage", str(experiment.parent), "--name", experiment.name,
                    "--resume", timeout=600)


@pytest.mark.parametrize("kill_point", ["first_checkpoint", "one_trial_finished"])
def test_kill_and_resume(tmp_path, tiny_demo_data, kill_point):
    experiment = tmp_path / "killed"
    conditions = {
        # mid-search: some trial has checkpointed epoch 1, none has finished
        "first_checkpoint": lambda: any(t.glob("checkpoint_000000") for t in _trials(experiment)),
        "one_trial_finished": lambda: any(len(_rows(t)) >= MAX_EPOCHS for t in _trials(experiment)),
    }
    _kill_when(_start(experiment, tiny_demo_data), conditions[kill_point])
    before = {t.name: len(_rows(t)) for t in _trials(experiment)}
    finished_before = {name for name, n in before.items() if n >= MAX_EPOCHS}

    proc = _resume(experiment)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]

    trials = _trials(experiment)
    assert len(trials) == NUM_SAMPLES, [t.name for t in trials]  # no trial run twice, none lost
    for trial in trials:
        iterations = [row["training_iteration"] for row in _rows(trial)]
        # every epoch reported; a trial continued from its checkpoint, not from epoch 1
        assert sorted(set(iterations)) == list(range(1, MAX_EPOCHS + 1)), (trial.name, iterations)
        assert iterations.count(1) == 1, f"{trial.name} restarted from scratch: {iterations}"
    for name in finished_before:  # completed work kept as it was
        assert len(_rows(experiment / name)) == before[name]
    state = json.loads(sorted(experiment.glob("experiment_state-*.json"))[-1].read_text())
    assert "ERROR" not in json.dumps(state)
