"""A driver killed with SIGKILL mid-search leaves no process of its Ray session behind."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest
from conftest import RAY_TMPDIR, REPO_ROOT, end_processes, ray_processes_under

pytestmark = pytest.mark.e2e
SETTLE_S = 30  # Ray's agents outlived a killed driver by a minute or more before (indefinitely, reported)


def test_no_ray_process_survives_a_killed_driver(tmp_path, tiny_demo_data):
    own = Path(tempfile.mkdtemp(prefix="k-", dir=RAY_TMPDIR))  # this driver's Ray sessions, and only them
    log = open(tmp_path / "tune.log", "w")
    driver = subprocess.Popen(
        [sys.executable, "runners/tune.py", "--framework", "yolo", "--data", str(tiny_demo_data),
         "--num-samples", "1", "--max-epochs", "50", "--cpus-per-trial", "1", "--storage", str(tmp_path),
         "--name", "killed", "--cache-dir", str(tmp_path / "cache")],
        cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "RAY_TMPDIR": str(own)})
    session: list[psutil.Process] = []
    try:
        session = _session_once_a_trial_runs(psutil.Process(driver.pid))
        names = sorted({p.name() for p in session if p.is_running()})
        assert any(n.startswith("ray::DashboardAgent") for n in names) and "raylet" in names, names
        assert {p.pid for p in ray_processes_under(own)} >= {p.pid for p in session if p.name() == "raylet"}
        driver.send_signal(signal.SIGKILL)
        driver.wait()
        _, alive = psutil.wait_procs(session, timeout=SETTLE_S)
        assert not alive, f"still running after the driver was killed: {[(p.pid, p.name()) for p in alive]}"
        # and none that the snapshot above missed (started since, or orphaned before it was taken)
        _, alive = psutil.wait_procs(ray_processes_under(own), timeout=5)
        assert not alive, f"still running after the driver was killed: {[(p.pid, p.name()) for p in alive]}"
    finally:
        if driver.poll() is None:
            driver.kill()
        end_processes([p for p in session if p.is_running()] + ray_processes_under(own))  # this test's own only
        log.close()


def _session_once_a_trial_runs(driver: psutil.Process, timeout: float = 300) -> list[psutil.Process]:
    """Every descendant of the driver once its trial's process is running."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            processes = driver.children(recursive=True)
            if any(p.name().startswith("ray::ImplicitFunc") for p in processes):
                return processes
        except psutil.NoSuchProcess:
            break
        time.sleep(1)
    pytest.fail("the search did not start a trial (see tune.log in the test's tmp_path)")
