"""One command for the first machine with NVIDIA GPUs: do segtune's searches really use them?

    python bench/gpu_check.py [--epochs 2] [--keep DIR]     # on a CUDA machine (< 10 min on one GPU)
    python bench/gpu_check.py --dry-run                     # anywhere: checks this script's own logic

Runs four short searches on the demo data as a user would (`runners/tune.py`, default GPU search
spaces and models): YOLO and torchvision Mask R-CNN from scratch (`--weights none`), each with 1 and
with 0.5 GPUs per trial, two trials per slot; and, when the framework's COCO-pretrained weights can be
had (in its cache or downloadable: docs/PRETRAINED.md), a fine-tuning search of each (the default
start, with its fine-tuning space) next to the one-GPU from-scratch one, and prints both (start and best
segm/AP). While they run it samples every GPU with `nvidia-smi` twice a second. Then it checks
every trial's result rows (`segtune/device`, `segtune/gpu_uuid`, `segtune/amp`, written by
runners/trial/loop.py): every trial trained on CUDA with AMP, the trials spread over every GPU, and with
0.5 GPUs per trial two trials shared a GPU at once. It prints GPU utilisation and memory per search
and ends with OK (exit 0) or the list of failures (exit 1). Without a CUDA GPU it says so (exit 2).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

# (framework, backend, GPUs per trial, origin): "scratch" is --weights none, "pretrained" the default start.
SEARCHES = (
    ("yolo", "", 1.0, "scratch"),
    ("yolo", "", 0.5, "scratch"),
    ("maskrcnn", "torchvision", 1.0, "scratch"),
    ("maskrcnn", "torchvision", 0.5, "scratch"),
)
FINETUNING = (("yolo", "", 1.0, "pretrained"), ("maskrcnn", "torchvision", 1.0, "pretrained"))
SMI_QUERY = "timestamp,index,uuid,utilization.gpu,memory.used"


@dataclass
class GpuSample:
    time: float  # seconds since the epoch
    index: int
    uuid: str
    utilization: float  # percent
    memory_mib: float


# ---- reading what happened ------------------------------------------------------------------------
def parse_smi(lines: list[str]) -> list[GpuSample]:
    """`nvidia-smi --query-gpu=<SMI_QUERY> --format=csv,noheader,nounits` lines; malformed ones skipped."""
    samples = []
    for line in lines:
        parts = [p.strip() for p in line.split(",")]
        if len(parts) != 5:
            continue
        try:
            stamp = time.mktime(time.strptime(parts[0].split(".")[0], "%Y/%m/%d %H:%M:%S"))
            samples.append(GpuSample(stamp, int(parts[1]), parts[2], float(parts[3]), float(parts[4])))
        except ValueError:
            continue  # "[N/A]" or a half-written line
    return samples


def read_trials(experiment: Path) -> list[dict]:
    """Per trial: its result rows and when it held its GPU (run_trial entry to its last report)."""
    from segtune.analysis.trials import read_results

    trials = []
    for trial_dir in sorted(experiment.glob("trial_*")):
        rows = read_results(trial_dir)
        startup = trial_dir / "startup.json"
        start = json.loads(startup.read_text())["trial_start"] if startup.is_file() else None
        trials.append(
            {
                "name": trial_dir.name,
                "rows": rows,
                "start": start,
                "end": start + rows[-1]["time_total_s"] if rows and start else None,
            }
        )
    return trials


def check_search(trials: list[dict], gpus: int, gpus_per_trial: float) -> tuple[list[str], list[str]]:
    """(facts, failures) about one search's trials on a machine with `gpus` GPUs."""
    failures = []
    rows = [r for t in trials for r in t["rows"]]
    if not rows:
        return [], ["no trial reported an epoch"]
    cuda = sum(
        all(str(r.get("segtune/device", "")).startswith("cuda") for r in t["rows"]) and bool(t["rows"]) for t in trials
    )
    amp = sum(bool(t["rows"]) and all(r.get("segtune/amp") == 1 for r in t["rows"]) for t in trials)
    used = {(r.get("segtune/node_id"), r.get("segtune/gpu_uuid")) for r in rows if r.get("segtune/gpu_uuid")}
    sharing = _most_at_once_per_gpu(trials)
    facts = [
        f"trials on CUDA: {cuda}/{len(trials)}; with AMP: {amp}/{len(trials)}; GPUs used: {len(used)}/{gpus}; "
        f"most trials at once on one GPU: {sharing}"
    ]
    if cuda < len(trials):
        failures.append(f"{len(trials) - cuda} trial(s) did not train on CUDA")
    if amp < len(trials):
        failures.append(f"{len(trials) - amp} trial(s) trained without AMP")
    if len(used) < min(gpus, len(trials)):
        failures.append(f"trials used {len(used)} of {gpus} GPUs")
    expected = round(1 / gpus_per_trial) if gpus_per_trial < 1 else 1
    if sharing < expected and len(trials) >= expected * gpus:
        failures.append(
            f"with {gpus_per_trial:g} GPUs per trial at most {sharing} trial(s) ran at once on a GPU "
            f"(expected {expected})"
        )
    return facts, failures


def _most_at_once_per_gpu(trials: list[dict]) -> int:
    intervals = defaultdict(list)
    for t in trials:
        if t["rows"] and t["start"] is not None and t["rows"][-1].get("segtune/gpu_uuid"):
            intervals[t["rows"][-1]["segtune/gpu_uuid"]].append((t["start"], t["end"]))
    most = 0
    for spans in intervals.values():
        events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])
        running = 0
        for _, step in events:
            running += step
            most = max(most, running)
    return most


def utilization_lines(samples: list[GpuSample], start: float, end: float) -> list[str]:
    by_gpu = defaultdict(list)
    for s in samples:
        if start <= s.time <= end:
            by_gpu[s.index].append(s)
    lines = []
    for index in sorted(by_gpu):
        values = [s.utilization for s in by_gpu[index]]
        lines.append(
            f"GPU {index}: utilisation mean {statistics.mean(values):.0f} %, median "
            f"{statistics.median(values):.0f} %, max {max(values):.0f} %; memory max "
            f"{max(s.memory_mib for s in by_gpu[index]) / 1024:.1f} GiB ({len(values)} samples)"
        )
    return lines or ["no GPU utilisation samples in this interval"]


# ---- running it ---------------------------------------------------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--keep", type=Path, default=None, help="keep the experiments under this folder")
    parser.add_argument("--dry-run", action="store_true", help="check the parsing and checks on made-up data")
    args = parser.parse_args()
    if args.dry_run:
        return dry_run()
    import torch

    if not torch.cuda.is_available() or shutil.which("nvidia-smi") is None:
        print(
            "gpu_check: no CUDA GPU here (torch.cuda.is_available() is "
            f"{torch.cuda.is_available()}, nvidia-smi {'found' if shutil.which('nvidia-smi') else 'missing'}); "
            "run it on a machine with NVIDIA GPUs and their driver",
            file=sys.stderr,
        )
        return 2
    gpus = torch.cuda.device_count()
    print(f"gpu_check: {gpus} GPU(s): {', '.join(sorted({torch.cuda.get_device_name(i) for i in range(gpus)}))}")
    with tempfile.TemporaryDirectory() as tmp:
        storage = (args.keep or Path(tmp)).resolve()
        smi_file = Path(tmp) / "smi.csv"
        with smi_file.open("w") as out:
            sampler = subprocess.Popen(
                ["nvidia-smi", f"--query-gpu={SMI_QUERY}", "--format=csv,noheader,nounits", "-lms", "500"],
                stdout=out,
                stderr=subprocess.DEVNULL,
            )
            try:
                results = [
                    run_search(fw, be, gpt, origin, gpus, args.epochs, storage, Path(tmp) / "cache")
                    for fw, be, gpt, origin in searches_to_run()
                ]
            finally:
                sampler.terminate()
                sampler.wait()
        samples = parse_smi(smi_file.read_text().splitlines())
    failures = []
    for title, start, end, facts, problems in results:
        print(f"== {title}")
        for line in facts + utilization_lines(samples, start, end):
            print(f"   {line}")
        failures += [f"{title}: {p}" for p in problems]
    if failures:
        print("gpu_check: FAILED\n  " + "\n  ".join(failures))
        return 1
    print(f"gpu_check: OK ({len(results)} searches)")
    return 0


def searches_to_run() -> list[tuple[str, str, float, str]]:
    """SEARCHES, each fine-tuning search after its framework's first from-scratch one when the framework's
    COCO-pretrained weights can be had here (said, with the reason, when not)."""
    from segtune.trainers.registry import get_adapter

    searches = list(SEARCHES)
    for framework, backend, gpus_per_trial, origin in FINETUNING:
        found = get_adapter(framework, backend or None).pretrained_weights("", has_gpu=True)
        if not found.available:
            print(f"gpu_check: no fine-tuning search of {framework}: {found.why_not} (docs/PRETRAINED.md)")
            continue
        first = next(i for i, s in enumerate(searches) if s[:2] == (framework, backend))
        searches.insert(first + 1, (framework, backend, gpus_per_trial, origin))
    return searches


def run_search(
    framework: str, backend: str, gpus_per_trial: float, origin: str, gpus: int, epochs: int, storage: Path, cache: Path
) -> tuple[str, float, float, list[str], list[str]]:
    slots = int(gpus / gpus_per_trial)
    trials = 2 * slots  # every slot runs a fresh and a reused trial process
    name = f"gpu-check-{framework}-{gpus_per_trial:g}-{origin}".replace(".", "_")
    command = [
        sys.executable,
        "runners/tune.py",
        "--framework",
        framework,
        "--num-samples",
        str(trials),
        "--max-epochs",
        str(epochs),
        "--grace-period",
        str(epochs),
        "--gpus-per-trial",
        str(gpus_per_trial),
        "--storage",
        str(storage),
        "--name",
        name,
        "--cache-dir",
        str(cache),
    ]
    if backend:
        command += ["--backend", backend]
    if origin == "scratch":
        command += ["--weights", "none"]
    title = (
        f"{framework}{f' ({backend})' if backend else ''}, {'fine-tuning' if origin == 'pretrained' else origin}, "
        f"{gpus_per_trial:g} GPU per trial, {trials} trials"
    )
    start = time.time()
    proc = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)
    end = time.time()
    title += f", {end - start:.0f} s"
    if proc.returncode != 0:
        return title, start, end, [], [f"runners/tune.py exit {proc.returncode}: {proc.stderr.strip()[-500:]}"]
    trials = read_trials(storage / name)
    facts, failures = check_search(trials, gpus, gpus_per_trial)
    # What the search started from, as its header said (a fine-tuning search whose download failed trains
    # from scratch and says so), and the best AP it reached: fine-tuning and from scratch, side by side.
    facts += [line.removeprefix("segtune: ") for line in proc.stdout.splitlines() if line.startswith("segtune: model ")]
    best = max((r.get("segm/AP", -1.0) for t in trials for r in t["rows"]), default=-1.0)
    facts.append(f"best segm/AP {best:.1f} after {epochs} epochs")
    return title, start, end, facts, failures


def dry_run() -> int:
    """The checks and the utilisation summary on made-up trials and nvidia-smi lines: a good run on
    two GPUs must pass, a bad one (a CPU trial, AMP off, one GPU idle, no sharing) must fail."""

    def trial(uuid: str, device: str, amp: int, start: float) -> dict:
        rows = [
            {
                "segtune/device": device,
                "segtune/amp": amp,
                "segtune/node_id": "n1",
                "segtune/gpu_uuid": uuid,
                "time_total_s": 10.0 * e,
            }
            for e in (1, 2)
        ]
        return {"name": uuid, "rows": rows, "start": start, "end": start + 20.0}

    good = [trial(u, "cuda:0", 1, s) for u in ("GPU-a", "GPU-b") for s in (0.0, 5.0, 30.0, 35.0)]
    bad = [
        trial("GPU-a", "cuda:0", 1, 0.0),
        trial("GPU-a", "cuda:0", 0, 30.0),
        trial("GPU-a", "cuda:0", 1, 60.0),
        trial("", "cpu", 0, 90.0),
    ]
    smi = [
        "2026/12/01 10:00:00.100, 0, GPU-a, 80, 2048",
        "2026/12/01 10:00:01.100, 0, GPU-a, 100, 4096",
        "2026/12/01 10:00:00.100, 1, GPU-b, 40, 1024",
        "[N/A]",
        "2026/12/01 10:00:01.1",
    ]
    samples = parse_smi(smi)
    good_facts, good_failures = check_search(good, gpus=2, gpus_per_trial=0.5)
    bad_facts, bad_failures = check_search(bad, gpus=2, gpus_per_trial=0.5)
    t0 = samples[0].time if samples else 0.0
    lines = utilization_lines(samples, t0 - 1, t0 + 2)
    print("good run:", *good_facts, *(good_failures or ["no failures"]), sep="\n   ")
    print("bad run:", *bad_facts, *bad_failures, sep="\n   ")
    print("utilisation:", *lines, sep="\n   ")
    expected = (
        len(samples) == 3
        and not good_failures
        and len(bad_failures) == 4
        and lines[0].startswith("GPU 0: utilisation mean 90 %")
    )
    print(f"gpu_check --dry-run: {'OK' if expected else 'FAILED'} (not a GPU test: the checks on made-up data)")
    return 0 if expected else 1


if __name__ == "__main__":
    sys.exit(main())
