"""Beyond one machine: a real two-node Ray cluster on this host, joined with --address."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import RAY_TMPDIR, end_processes, ray_processes_under, run_tune

pytestmark = pytest.mark.e2e


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def two_node_cluster(monkeypatch):
    # the `ray` of this interpreter's environment (a virtualenv's bin/ need not be on PATH)
    beside = Path(sys.executable).parent / "ray"
    ray_cli = str(beside) if beside.exists() else shutil.which("ray")
    if ray_cli is None:
        pytest.skip("the 'ray' command is not on PATH")
    # Ray >= 2.5x protects `ray start` clusters with a token (~/.ray/auth_token); every process must use it.
    # A private token for this test cluster, so the user's ~/.ray/auth_token is neither needed nor made.
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    monkeypatch.setenv("RAY_AUTH_TOKEN", secrets.token_hex(32))
    port = _free_port()
    address = f"127.0.0.1:{port}"
    common = ["--num-cpus=1", "--num-gpus=0", "--disable-usage-stats", "--node-ip-address=127.0.0.1"]
    # This cluster's own session directory: its processes are told from every other Ray by it.
    own = Path(tempfile.mkdtemp(prefix="c-", dir=RAY_TMPDIR))

    def ray(*args: str) -> None:
        subprocess.run(
            [ray_cli, *args], check=True, capture_output=True, timeout=120, env={**os.environ, "RAY_TMPDIR": str(own)}
        )

    try:
        ray("start", "--head", f"--port={port}", "--include-dashboard=false", *common)
        ray("start", f"--address={address}", *common)
        yield address
    finally:
        _stop_cluster(own)


def _stop_cluster(own: Path) -> None:
    """End this cluster's processes only, and check that they ended. `ray stop` would end every Ray on
    the machine, the user's and other test runs' included. (The cluster's address is no mark: Ray
    names the machine's own IP address in its processes' command lines, and the GCS names only its
    port; `ray start` detaches them from this process.)"""
    end_processes(ray_processes_under(own))
    deadline = time.monotonic() + 15
    while ray_processes_under(own) and time.monotonic() < deadline:  # workers a raylet started late
        end_processes(ray_processes_under(own))
        time.sleep(0.5)
    left = [f"{p.name()} ({p.pid})" for p in ray_processes_under(own)]
    assert not left, f"the test cluster's processes outlived its stop: {left}"


def test_search_spreads_over_both_nodes(tmp_path, tiny_demo_data, two_node_cluster):
    proc = run_tune(
        "--framework",
        "yolo",
        "--data",
        str(tiny_demo_data),
        "--address",
        two_node_cluster,
        "--num-samples",
        "2",
        "--max-epochs",
        "1",
        "--cpus-per-trial",
        "1",
        "--storage",
        str(tmp_path),
        "--name",
        "cluster",
        "--cache-dir",
        str(tmp_path / "cache"),
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "2 at a time" in proc.stdout  # one trial per node: each node has one CPU
    nodes = set()
    for result in (tmp_path / "cluster").glob("trial_*/result.json"):
        rows = [json.loads(line) for line in result.read_text().splitlines() if line.strip()]
        nodes.update(row["segtune/node_id"] for row in rows)
    assert len(nodes) == 2, f"trials ran on {len(nodes)} node(s), expected both"
