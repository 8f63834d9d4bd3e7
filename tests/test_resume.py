"""Kill the driver with SIGKILL at several points of a real search, resume, and lose nothing:
not a trial, not an epoch, not a trial of the Optuna study (which must hold each trial once).
Each killed driver leaves no process of its Ray session behind (runners/cluster/reaper.py)."""

from __future__ import annotations

import functools
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna
import psutil
import pytest
from conftest import RAY_TMPDIR, REPO_ROOT, end_processes, ray_processes_under, run_tune
from test_study_e2e import check_study_matches_trials

pytestmark = pytest.mark.e2e
MAX_EPOCHS = 2
NUM_SAMPLES = 3
SETTLE_S = 30  # Ray's agents outlived a killed driver by a minute or more before (indefinitely, reported)


def _rows(trial_dir: Path) -> list[dict]:
    path = trial_dir / "result.json"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _trials(experiment: Path) -> list[Path]:
    return sorted(p for p in experiment.glob("trial_*") if p.is_dir())


def _new_search_args(experiment: Path, data: Path, space: Path) -> list[str]:
    return [
        "--framework",
        "yolo",
        "--data",
        str(data),
        "--space",
        str(space),
        "--num-samples",
        str(NUM_SAMPLES),
        "--max-epochs",
        str(MAX_EPOCHS),
        "--grace-period",
        str(MAX_EPOCHS),
        "--seed",
        "3",
        "--storage",
        str(experiment.parent),
        "--name",
        experiment.name,
        "--cache-dir",
        str(experiment.parent / "cache"),
    ]


def _start(experiment: Path, args: list[str], ray_tmpdir: Path) -> subprocess.Popen:
    log = open(experiment.parent / f"{experiment.name}.log", "a")
    return subprocess.Popen(
        [sys.executable, "runners/tune.py", *args],
        cwd=REPO_ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "RAY_TMPDIR": str(ray_tmpdir)},
    )


def _kill_when(proc: subprocess.Popen, condition, ray_tmpdir: Path, timeout: float = 240, before_kill=None) -> None:
    """SIGKILL the driver once `condition()` holds, then check that no process of its Ray session
    (`ray_tmpdir`: its own) outlives it: those it had at the kill, and any other."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, "the search ended before the kill point"
        assert time.monotonic() < deadline, "kill point never reached"
        time.sleep(0.2)
    if before_kill is not None:
        before_kill()
    session = psutil.Process(proc.pid).children(recursive=True)
    names = sorted({p.name() for p in session if p.is_running()})
    assert "raylet" in names and any(n.startswith("ray::DashboardAgent") for n in names), names
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    try:
        _, alive = psutil.wait_procs(session, timeout=SETTLE_S)
        _, others = psutil.wait_procs([p for p in ray_processes_under(ray_tmpdir) if p not in alive], timeout=5)
        alive += others
        assert not alive, f"still running after the driver was killed: {[(p.pid, p.name()) for p in alive]}"
    finally:
        end_processes([p for p in session if p.is_running()] + ray_processes_under(ray_tmpdir))  # this test's only


def _read_study_while_it_runs(experiment: Path, seen_running: list) -> None:
    """From this process, while the driver writes: the study opens, and a trial whose checkpoint Ray has
    recorded has its first epoch in the study already (Ray hands a result to the searcher before it
    writes the snapshot)."""
    study = optuna.load_study(study_name=experiment.name, storage=f"sqlite:///{experiment / 'optuna.db'}")
    seen_running.extend(t for t in study.trials if t.intermediate_values)


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


def test_kill_and_resume_again_and_again(tmp_path, tiny_demo_data, yolo_test_space):
    """One search, its driver killed at each point in turn: the new search once its trials have started,
    the resumed one once Ray has recorded a checkpoint, the one resumed again once a trial has finished;
    then a last resume completes it. Whatever was checkpointed or finished at any kill is kept."""
    experiment = tmp_path / "killed"
    conditions = {  # something new since the last kill (`recorded`, `finished`: what the snapshots held then)
        "trials_started": lambda: bool(_trials(experiment)),
        "checkpoint_recorded": lambda: bool(
            {n for n, t in _snapshot(experiment).items() if t["checkpointed"]} - recorded
        ),
        "trial_finished": lambda: bool(
            {n for n, t in _snapshot(experiment).items() if t["status"] == "TERMINATED"} - finished
        ),
    }
    recorded: set[str] = set()
    finished: set[str] = set()
    before: dict[str, list[dict]] = {}  # a finished trial's rows when a kill found it finished
    before_numbers: dict[str, int] = {}  # segtune trial id -> its study trial's number, at the kills
    resume = ["--framework", "yolo", "--storage", str(experiment.parent), "--name", experiment.name, "--resume"]
    for kill_point in conditions:
        seen_running: list = []
        ray_tmpdir = Path(tempfile.mkdtemp(prefix="k-", dir=RAY_TMPDIR))  # the killed driver's Ray, and only it
        new = kill_point == "trials_started"
        args = _new_search_args(experiment, tiny_demo_data, yolo_test_space) if new else resume
        _kill_when(
            _start(experiment, args, ray_tmpdir),
            conditions[kill_point],
            ray_tmpdir,
            before_kill=functools.partial(_read_study_while_it_runs, experiment, seen_running),
        )
        if kill_point != "trials_started":
            assert seen_running, f"no intermediate value in the study while the search ran ({kill_point})"
        after_kill = optuna.load_study(study_name=experiment.name, storage=f"sqlite:///{experiment / 'optuna.db'}")
        assert after_kill.trials  # a killed driver leaves a readable study
        before_numbers.update(
            {
                t.user_attrs["segtune_trial_id"]: t.number
                for t in after_kill.trials
                if "segtune_trial_id" in t.user_attrs
            }
        )
        snapshot = _snapshot(experiment)
        checkpointed = {name for name, t in snapshot.items() if t["checkpointed"]}
        if kill_point != "trials_started":
            assert checkpointed, f"the snapshot named no checkpoint at the kill point {kill_point}"
        recorded |= checkpointed
        for name in {name for name, t in snapshot.items() if t["status"] == "TERMINATED"} - finished:
            finished.add(name)
            before[name] = _rows(experiment / name)

    proc = run_tune(*resume, timeout=600)
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
    assert finished, "no trial had finished at the last kill"
    final = json.loads(sorted(experiment.glob("experiment_state-*.json"))[-1].read_text())
    assert "ERROR" not in json.dumps(final)
    # The resumed drivers reconnected to the study: the trials from before each kill are in it once,
    # with the epochs they ran then and after, none left RUNNING.
    own = check_study_matches_trials(experiment)
    assert {tid: own[tid].number for tid in before_numbers} == before_numbers
