"""Shared fixtures. Real experiments are made once per session and shared by the tests that read them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATASET = REPO_ROOT.parent / "shared" / "datasets" / "microcontroller_seg"

# Every Ray this test run starts (in this process, in `segtune tune` subprocesses, `ray start` in
# test_cluster.py) keeps its session under this private directory (Ray reads RAY_TMPDIR), so the run
# can tell its own Ray processes from those of other people on this machine and check that none is
# left behind (`no_ray_process_left_behind`). Short: Ray's socket paths inside it must fit 107 bytes.
RAY_TMPDIR = Path(tempfile.mkdtemp(prefix="st-", dir="/tmp" if os.path.isdir("/tmp") else None))
os.environ["RAY_TMPDIR"] = str(RAY_TMPDIR)
LEFTOVER_WAIT_S = 30  # a driver's reaper needs a few seconds; Ray's shutdown of an in-process cluster too


def ray_processes_under(root: Path) -> list[psutil.Process]:
    """The live processes of the Ray sessions under `root` (a RAY_TMPDIR): those whose command line
    names it, and those whose stdout or stderr is a log there (Ray renames its workers and agents,
    "ray::IDLE", and they may be orphans: only their open logs say whose they are)."""
    found = []
    prefix = os.path.join(str(root), "")
    for process in psutil.process_iter():
        if process.pid == os.getpid():
            continue
        try:
            if process.status() == psutil.STATUS_ZOMBIE:
                continue
            if prefix in " ".join(process.cmdline()) or any(
                f.fd in (1, 2) and f.path.startswith(prefix) for f in process.open_files()
            ):
                found.append(process)
        except psutil.Error:
            pass
    return found


def end_processes(processes: list[psutil.Process]) -> list[str]:
    """Terminate, then kill, these processes; `name (pid)` of each that was still running."""
    names = []
    for process in processes:
        try:
            names.append(f"{process.name()} ({process.pid})")
            process.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(processes, timeout=10)
    for process in alive:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    return names


@pytest.fixture(scope="session", autouse=True)
def no_ray_process_left_behind():
    """After the last test: shut down the Ray that tests started in this process (`tune.with_parameters`
    starts one by itself), then fail if any Ray process of this run outlives it, ending it first."""
    yield
    if "ray" in sys.modules:
        import ray

        ray.shutdown()
    left = ray_processes_under(RAY_TMPDIR)
    _, alive = psutil.wait_procs(left, timeout=LEFTOVER_WAIT_S)
    names = end_processes(alive)
    shutil.rmtree(RAY_TMPDIR, ignore_errors=True)
    if names:
        pytest.fail(
            f"Ray processes of this test run still running {LEFTOVER_WAIT_S} s after its last test "
            f"(ended now): {', '.join(names)}",
            pytrace=False,
        )


def edit_annotations(dataset: Path, split: str, change: Callable[[dict], object]) -> None:
    """Apply `change` to the COCO dict of `dataset/annotations/instances_<split>.json`, in place."""
    path = dataset / "annotations" / f"instances_{split}.json"
    coco = json.loads(path.read_text())
    change(coco)
    path.write_text(json.dumps(coco))


def keys_without_ground_truth(gt_json: Path) -> set[str]:
    """The size metrics ("segm/APl", ...) that must be -1: no non-crowd object of that size in the
    file (COCO's ranges, on the annotations' areas, bounds included)."""
    ranges = {"APs": (0, 32**2), "APm": (32**2, 96**2), "APl": (96**2, 1e10)}
    areas = [a["area"] for a in json.loads(Path(gt_json).read_text())["annotations"] if not a.get("iscrowd")]
    return {
        f"{task}/{name}"
        for task in ("segm", "bbox")
        for name, (low, high) in ranges.items()
        if not any(low <= area <= high for area in areas)
    }


def run_tune(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """`python runners/tune.py ARGS` as a user runs it, from the repository root."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "runners/tune.py", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def small_coco(tmp_path_factory) -> Path:
    """A small synthetic COCO set (12 train / 4 val images, 64 px): copy it before breaking it."""
    from segtune.cocodata.synthetic import make_demo_dataset

    return make_demo_dataset(tmp_path_factory.mktemp("small") / "shapes", n_train=12, n_val=4, image_size=64, seed=2)


@pytest.fixture
def dataset(small_coco: Path, tmp_path: Path) -> Path:
    """A writable copy of `small_coco` at tmp_path/data."""
    return Path(shutil.copytree(small_coco, tmp_path / "data"))


@pytest.fixture(scope="session")
def tiny_demo_data(tmp_path_factory) -> Path:
    """A small synthetic COCO set (32 train / 8 val images, 96 px): fast enough for real searches."""
    from segtune.cocodata.synthetic import make_demo_dataset

    return make_demo_dataset(tmp_path_factory.mktemp("tiny-demo"), n_train=32, n_val=8, image_size=96, seed=0)


# The search space of the shared YOLO experiment. The metric is a validation loss: at this size
# every AP is still 0 after a few epochs and ASHA cannot rank ties. The loss gains (`box` scales
# the box and mask losses) spread the trials' losses far apart from the first epoch, so which trial
# ASHA stops follows from the seeded sampler, not from float noise. The first trial is Ultralytics'
# defaults, the second random, the others TPE's (runners/search/searcher.py: 2 startup trials of 4).
YOLO_TEST_SPACE = """framework: yolo
params:
  box: {type: float, low: 1.0, high: 50.0, log: true}
  cls: {type: float, low: 0.2, high: 2.0}
  dfl: {type: float, low: 0.5, high: 3.0}
  lr0: {type: float, low: 1.0e-3, high: 2.0e-2, log: true}
  optimizer: SGD
  imgsz: 96
  batch: 16
  nbs: 16
  close_mosaic: 2
  cache: ram
"""


@pytest.fixture(scope="session")
def yolo_test_space(tmp_path_factory) -> Path:
    """YOLO_TEST_SPACE in a file: small, fast trials (96 px, 2 batches an epoch; the shipped CPU space
    trains 128 px in 4), for searches whose tests are about something else than the space."""
    path = tmp_path_factory.mktemp("space") / "yolo-test-space.yaml"
    path.write_text(YOLO_TEST_SPACE)
    return path


@pytest.fixture(scope="session")
def yolo_experiment(tmp_path_factory, tiny_demo_data) -> Path:
    """A real YOLO search: Ray Tune + Optuna + ASHA + Ultralytics, 4 trials of up to 4 epochs,
    one at a time (2 CPUs each) so that ASHA sees them in the sampler's order."""
    storage = tmp_path_factory.mktemp("yolo-runs")
    space = storage / "space.yaml"
    space.write_text(YOLO_TEST_SPACE)
    proc = run_tune(
        "--framework",
        "yolo",
        "--data",
        str(tiny_demo_data),
        "--space",
        str(space),
        "--num-samples",
        "4",
        "--max-epochs",
        "4",
        "--grace-period",
        "1",
        "--reduction-factor",
        "2",
        "--metric",
        "yolo/val/seg_loss",
        "--cpus-per-trial",
        "2",
        "--seed",
        "0",
        "--confirm-top",
        "0",
        "--storage",
        str(storage),
        "--name",
        "yolo-e2e",
        "--cache-dir",
        str(storage / "cache"),
    )
    assert proc.returncode == 0, f"search failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    (storage / "yolo-e2e.stdout.txt").write_text(proc.stdout)
    (storage / "yolo-e2e.stderr.txt").write_text(proc.stderr)
    return storage / "yolo-e2e"


def check_cost_rows(rows: list[dict], parameters: int | None = None) -> None:
    """The cost/* metrics (runners/trial/cost.py) in a healthy trial's result rows are present and sane;
    `parameters`: the trained model's parameter count, when the caller knows it."""
    train_times = []
    for row in rows:
        assert row["cost/latency_ms"] > 0 and row["cost/fps"] == pytest.approx(1000 / row["cost/latency_ms"])
        assert row["cost/train_mem_mb"] > 0 and row["cost/infer_mem_mb"] > 0 and row["cost/params_m"] > 0
        assert 0 < row["cost/epoch_time_s"] <= row["cost/train_time_s"]
        timed = row["cost/latency_epoch"]
        assert timed <= row["epoch"] and timed & (timed - 1) == 0, timed  # epochs 1, 2, 4, ...
        assert row["cost/device"].startswith(("cpu", "cuda")) and row["segtune/cost_time_s"] > 0
        if parameters is not None:
            assert round(row["cost/params_m"] * 1e6) == parameters
        train_times.append(row["cost/train_time_s"])
    assert train_times == sorted(train_times)
