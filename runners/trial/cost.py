"""What a trial's model costs, measured the same way for every framework: the `cost/*` metrics.

Every reported epoch carries (MB = 2^20 bytes):
  cost/latency_ms     median wall time of one end-to-end inference of one val image at batch 1
                      (adapter's `single_image_inference`: decoded image in memory -> preprocessing
                      at the trial's test size -> network -> NMS and full-resolution binary masks
                      in host memory), after warm-up runs; on the trial's own device
  cost/fps            1000 / cost/latency_ms (one image at a time, not batched throughput)
  cost/infer_mem_mb   the network's weights (as run) + the peak of memory one inference adds:
                      CUDA: torch.cuda.max_memory_allocated above what was allocated before;
                      CPU: growth of the process's peak resident memory (/proc VmHWM) after freed
                      heap memory went back to the OS (glibc malloc_trim) -- coarser; Linux only
  cost/train_mem_mb   peak memory while training (segtune's evaluation excluded): CUDA: tensor
                      memory, torch.cuda.max_memory_allocated (nvidia-smi shows more: CUDA context,
                      allocator cache); CPU: the trial process's peak resident memory (VmHWM, reset
                      at the trial's start; elsewhere ru_maxrss) -- Python, libraries, cached data
                      included. CPU and CUDA figures measure different things: compare on one device.
  cost/params_m       parameters of the trained model, in millions
  cost/epoch_time_s   median wall time of the framework's epochs (all it does between two epoch
                      callbacks: training, and its own validation where it runs one), segtune's
                      evaluation, checkpoint and cost measurement excluded
  cost/train_time_s   the sum of those epoch times up to this epoch (startup included)
  cost/latency_epoch  the epoch whose weights were timed
  cost/device         where it was measured, in words (a string: not in TensorBoard)
and segtune/cost_time_s: what measuring costs took in this trial so far (the overhead).

Weights change the latency only through the number of instances a model outputs (postprocessing
of up to max-detections masks), which grows as a model learns: latency is measured after epochs
1, 2, 4, 8, ... (twice as late each time), so a row's latency comes from weights at least half as
trained as the row's, at a cost of log2(epochs) measurements per trial.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import re
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from segtune.cocodata.results import ImageRecord
from segtune.trainers.base import TrainerAdapter

WARMUP_RUNS = {"cpu": 3, "cuda": 10}
TIMED_RUNS = {"cpu": 10, "cuda": 50}
STATE_FILE = "segtune_cost.json"  # beside the adapter's files in each checkpoint: a resumed trial goes on
_MB = float(1 << 20)


class TrialCost:
    """Measures one trial. Its hook (hooks.py: CostHook) calls `epoch_trained` when an epoch callback
    starts, `metrics` for the row it reports, `save` into the checkpoint, and `training_resumes` when
    it hands back."""

    def __init__(self, adapter: TrainerAdapter, device: str) -> None:
        self.adapter = adapter
        self.device = device
        self.cuda = device.startswith("cuda")
        self.epoch_times: list[float] = []
        self.train_peak_mb = 0.0
        self.inference: dict[str, Any] = {}  # latency_ms, infer_mem_mb, latency_epoch, params
        self.overhead_s = 0.0
        import torch

        # The trial's CPU threads (loop.py sets them from --cpus-per-trial) before any framework
        # changes them (Ultralytics sets min(8, cores - 1)): every framework is timed with as many.
        self.threads = torch.get_num_threads()
        self.training_resumes()

    # ---- the trial's calls ----------------------------------------------------------------------
    def restore(self, checkpoint: Path | None) -> None:
        """Carry on from a checkpoint's measurements (a resumed or retried trial)."""
        state_file = Path(checkpoint) / STATE_FILE if checkpoint is not None else None
        if state_file is None or not state_file.is_file():
            return
        state = json.loads(state_file.read_text())
        self.epoch_times = [float(t) for t in state["epoch_times"]]
        self.train_peak_mb = float(state["train_peak_mb"])
        self.inference = dict(state["inference"])
        self.overhead_s = float(state["overhead_s"])

    def epoch_trained(self) -> None:
        self.epoch_times.append(time.perf_counter() - self._resumed_at)
        self.train_peak_mb = max(self.train_peak_mb, self._peak_memory_mb())

    def metrics(self, epoch: int) -> dict[str, Any]:
        started = time.perf_counter()
        last = int(self.inference.get("latency_epoch", 0))
        if not last or epoch >= 2 * last:
            self.inference = self._measure_inference(epoch)
        self.overhead_s += time.perf_counter() - started
        latency = self.inference["latency_ms"]
        row = {
            "cost/latency_ms": latency,
            "cost/fps": 1000.0 / latency if latency > 0 else 0.0,
            "cost/params_m": self.inference["params"] / 1e6,
            "cost/train_mem_mb": self.train_peak_mb,
            "cost/epoch_time_s": statistics.median(self.epoch_times),
            "cost/train_time_s": sum(self.epoch_times),
            "cost/latency_epoch": self.inference["latency_epoch"],
            "cost/device": self.inference["device"],
            "segtune/cost_time_s": self.overhead_s,
        }
        if self.inference.get("infer_mem_mb") is not None:
            row["cost/infer_mem_mb"] = self.inference["infer_mem_mb"]
        return row

    def save(self, directory: Path) -> None:
        state = {
            "epoch_times": self.epoch_times,
            "train_peak_mb": self.train_peak_mb,
            "inference": self.inference,
            "overhead_s": self.overhead_s,
        }
        (Path(directory) / STATE_FILE).write_text(json.dumps(state))

    def training_resumes(self) -> None:
        """From here on the framework trains: the next epoch's time and memory peak start now."""
        if self.cuda:
            import torch

            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            _reset_peak_rss()
        self._resumed_at = time.perf_counter()

    # ---- measuring ------------------------------------------------------------------------------
    def _measure_inference(self, epoch: int) -> dict[str, Any]:
        image = timing_image(self.adapter.val_images)
        kind = "cuda" if self.cuda else "cpu"
        with _torch_threads(self.threads), self.adapter.single_image_inference(image) as inference:
            for _ in range(WARMUP_RUNS[kind] - 1):
                inference.run()
            memory = self._inference_memory_mb(inference)  # the last warm-up run
            times = []
            for _ in range(TIMED_RUNS[kind]):
                self._synchronize()
                start = time.perf_counter()
                inference.run()
                self._synchronize()
                times.append(time.perf_counter() - start)
            device = device_description(self.device)
        return {
            "latency_ms": 1000.0 * statistics.median(times),
            "infer_mem_mb": memory,
            "latency_epoch": epoch,
            "params": inference.parameters,
            "device": device,
        }

    def _inference_memory_mb(self, inference) -> float | None:
        """Weights as run + what one (untimed) inference adds at its peak."""
        weights = (
            sum(t.numel() * t.element_size() for t in [*inference.network.parameters(), *inference.network.buffers()])
            / _MB
        )
        if self.cuda:
            import torch

            self._synchronize()
            before = torch.cuda.memory_allocated(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            inference.run()
            self._synchronize()
            return weights + (torch.cuda.max_memory_allocated(self.device) - before) / _MB
        before = _rss_mb("VmRSS")
        if before is None or not _trim_heap() or not _reset_peak_rss():
            return None
        before = _rss_mb("VmRSS")
        inference.run()
        return weights + max(0.0, (_rss_mb("VmHWM") or before) - before)

    def _peak_memory_mb(self) -> float:
        if self.cuda:
            import torch

            return torch.cuda.max_memory_allocated(self.device) / _MB
        peak = _rss_mb("VmHWM")
        if peak is None:  # no /proc: the process's lifetime peak (KiB on Linux, bytes on macOS)
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (_MB if sys.platform == "darwin" else 1024.0)
        return peak

    def _synchronize(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize(self.device)


@contextlib.contextmanager
def _torch_threads(threads: int):
    """torch's intra-op threads set to `threads` inside, as they were afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def timing_image(images: list[ImageRecord]) -> ImageRecord:
    """The val image that is timed: the one of median pixel count (the same for every trial of an
    experiment, and for every framework on the same data)."""
    ordered = sorted(images, key=lambda r: r.width * r.height)
    return ordered[(len(ordered) - 1) // 2]


def device_description(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return f"{device} {torch.cuda.get_device_name(device)}"
    name = ""
    with contextlib.suppress(OSError):
        found = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.MULTILINE)
        name = f" {found.group(1).strip()}" if found else ""
    threads = torch.get_num_threads()
    return f"cpu{name}, {threads} thread{'s' if threads > 1 else ''}"


# ---- process memory (Linux /proc; elsewhere these say they cannot) -----------------------------
def _rss_mb(field: str) -> float | None:
    try:
        found = re.search(rf"^{field}:\s+(\d+) kB", Path("/proc/self/status").read_text(), re.MULTILINE)
    except OSError:
        return None
    return int(found.group(1)) / 1024.0 if found else None


def _reset_peak_rss() -> bool:
    """Restart the kernel's peak-RSS record (VmHWM) of this process (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _trim_heap() -> bool:
    """Give freed heap memory back to the OS (glibc), so that what an inference allocates shows as growth."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        return False
    return True
