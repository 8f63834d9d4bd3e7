"""Trial failures in real searches: recorded with their reason, retried on request, never fatal
to the search — unless every trial fails, which the runner says plainly (exit status 1).

Faults are injected into real YOLO trials by a hook the tests add (tests/fault_hooks.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_tune
from fault_hooks import fault_env

pytestmark = pytest.mark.e2e


@pytest.fixture
def search(tmp_path, tiny_demo_data, yolo_test_space, monkeypatch):
    """`search(fault, *args)`: a real YOLO search of small trials into tmp_path/exp, with this fault."""

    def run(fault: str, *args: str):
        for name, value in fault_env(fault).items():
            monkeypatch.setenv(name, value)
        return run_tune(
            "--framework",
            "yolo",
            "--data",
            str(tiny_demo_data),
            "--space",
            str(yolo_test_space),
            "--storage",
            str(tmp_path),
            "--name",
            "exp",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--grace-period",
            "1",
            *args,
        )

    return run


def _rows(trial: Path) -> list[dict]:
    return [json.loads(line) for line in (trial / "result.json").read_text().splitlines() if line.strip()]


def test_dead_trial_process_is_retried_from_its_checkpoint(tmp_path, search):
    proc = search(
        "exit@2:first", "--num-samples", "2", "--max-epochs", "2", "--reduction-factor", "100", "--max-failures", "1"
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "2 trials: 2 finished" in proc.stdout  # the retried trial finished too
    trials = sorted((tmp_path / "exp").glob("trial_*"))
    assert len(trials) == 2
    assert (tmp_path / "exp" / ".segtune-fault-injected").exists()  # one trial's process did die
    for trial in trials:
        iterations = [row["training_iteration"] for row in _rows(trial)]
        assert sorted(set(iterations)) == [1, 2] and iterations.count(1) == 1, iterations


def test_failed_trial_is_recorded_and_the_search_goes_on(tmp_path, search):
    proc = search("raise@1:first", "--num-samples", "2", "--max-epochs", "1")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "1 failed" in proc.stdout
    errors = list((tmp_path / "exp").glob("trial_*/error.txt"))
    assert len(errors) == 1 and "injected fault at epoch 1" in errors[0].read_text()


def test_every_trial_failing_ends_with_the_reason(tmp_path, search):
    proc = search("oom@1", "--num-samples", "2", "--max-epochs", "1")
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert "every trial failed" in last and "out of memory" in last.lower(), last
