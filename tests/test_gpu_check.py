"""bench/gpu_check.py: its checks on made-up data here; the real check needs a CUDA machine."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "bench/gpu_check.py", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )


def test_dry_run_passes_a_good_run_and_fails_a_bad_one():
    proc = _run("--dry-run")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "trials used 1 of 2 GPUs" in proc.stdout and "GPU 0: utilisation mean 90 %" in proc.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_without_a_gpu_it_says_so():
    proc = _run()
    assert proc.returncode == 2 and "no CUDA GPU" in proc.stderr and proc.stderr.count("\n") == 1
