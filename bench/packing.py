"""GPU packing, simulated: do trials keep every GPU slot busy? No GPU needed.

    python bench/packing.py [--gpus-per-trial 1 0.5 0.25] [--trials 32] [--epoch-s 1]
                            [--layout cluster|single] [--fresh-actors] [--quick]

Ray is started with fake resources: by default a simulated three-node cluster on this host
(`ray.cluster_utils.Cluster`: a CPU-only head and two GPU workers, 4 GPUs in all, of uneven
size) so that the per-node plan of `runners/plan/resources.py` is exercised; `--layout single` is one
node with 4 GPUs. Each trial sleeps a fixed time per "epoch" and reports (it never touches CUDA);
an epoch takes --epoch-s on a whole GPU and epoch-s / g on g GPUs (see epoch_seconds).
The search is the project's own: `plan_resources` on the live cluster, then `build_tuner`
(StudySearch TPE + ASHA, max_concurrent_trials, tune.with_resources), with only the
trainable swapped for the sleeping one.

Measured from the wall-clock start and end that every trial reports:
- max concurrent: most trials running at once (the target: slots = GPUs / --gpus-per-trial);
- ramp-up: from the first trial's start until every slot is busy (each slot's first trial starts a
  Ray worker process; on 2 cores these start one after another);
- steady state, from then to the last trial's start (the searcher still has trials to hand out):
  mean trials running, and busy = trial time / (slots x time); idle slots here are gaps between
  one trial's end and the next one's start in that slot (Ray, the searcher, trial start-up);
- busy, whole run: from the first start to the last end, so it also counts the ramp-up and the
  drain at the end, when fewer trials than slots are left (ASHA's survivors run on alone).
`--fresh-actors` runs the trials as the project did before (reuse_actors=False: a new Ray worker
process per trial) to show what that costs.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

from segtune.core.record import RunSettings
from segtune.core.sections import Budget, FrameworkEntry, Objective, Schedule
from segtune.core.sections import Resources as TrialResources
from segtune.runners.plan.resources import Resources, plan_resources
from segtune.runners.search import tuner as project_tuner
from segtune.search_spaces.space import parse_space

REPO_ROOT = Path(__file__).resolve().parents[1]

METRIC = "score"
# head: CPU only; workers of uneven size. A plan from cluster totals (26 CPUs / 4 GPUs = 6 per trial)
# would fit only 3 one-GPU trials here: 2 on the 16-CPU worker, 1 on the 8-CPU one.
CLUSTER = ({"num_cpus": 2, "num_gpus": 0}, {"num_cpus": 16, "num_gpus": 3}, {"num_cpus": 8, "num_gpus": 1})
SINGLE = {"num_cpus": 16, "num_gpus": 4}


@dataclass(frozen=True)
class Span:
    start: float
    end: float


def sleeping_trial(config: dict) -> None:
    """An "epoch" is a fixed sleep; the score grows with the epoch and with x, so ASHA has ranks."""
    from ray import tune

    from segtune.core.score import RunningScore

    started = time.time()
    running = RunningScore("max")  # segtune's score: what the Tuner's ASHA and searcher judge
    for epoch in range(1, int(config["epochs"]) + 1):
        time.sleep(float(config["epoch_s"]))
        score = float(config["x"]) * (1 - 0.5**epoch)
        tune.report({METRIC: score, **running.add(score), "bench/start": started, "bench/end": time.time()})


def epoch_seconds(whole_gpu_epoch_s: float, gpus_per_trial: float) -> float:
    """A trial's epoch on its share of the GPUs: a quarter of a GPU computes a quarter as fast.
    So every row of the table does the same GPU work, and trials on GPU fractions last long
    enough for this 2-core host to start one per slot before the first ones end."""
    return whole_gpu_epoch_s / gpus_per_trial


def start_ray(layout: str):
    """Start a local Ray with fake GPUs; returns the simulated cluster to shut down, or None."""
    import ray

    quiet = {"include_dashboard": False}
    if layout == "single":
        # address="local": never join another Ray that happens to run on this host
        ray.init(address="local", logging_level="ERROR", log_to_driver=False, **SINGLE, **quiet)
        return None
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={**CLUSTER[0], **quiet})
    for node in CLUSTER[1:]:
        cluster.add_node(**node)
    ray.init(address=cluster.address, logging_level="ERROR", log_to_driver=False)
    cluster.wait_for_nodes()
    return cluster


def run_search(gpus_per_trial: float, args: argparse.Namespace, storage: Path) -> tuple[Resources, list[Span]]:
    from ray import tune

    plan = plan_resources(gpus_per_trial, None, None, args.trials)
    space = parse_space(
        {
            "x": {"type": "float", "low": 0.0, "high": 1.0},
            "epochs": args.max_epochs,
            "epoch_s": epoch_seconds(args.epoch_s, gpus_per_trial),
        },
        source="bench",
    )
    experiment_dir = storage / f"gpt{gpus_per_trial:g}"
    experiment_dir.mkdir(parents=True)
    settings = RunSettings(
        data=None,
        frameworks=(FrameworkEntry("bench", space=space.to_dict()),),  # no data: nothing reads it
        space=space.to_dict(),
        objective=Objective(METRIC, "max"),
        budget=Budget(max_epochs=args.max_epochs, num_samples=args.trials),
        schedule=Schedule(grace_period=1, reduction_factor=3),
        resources=TrialResources(
            gpus_per_trial=plan.gpus_per_trial,
            cpus_per_trial=plan.cpus_per_trial,
            workers=plan.workers,
            max_concurrent=plan.max_concurrent,
        ),
        seed=0,
        experiment_dir=str(experiment_dir),
    )

    def sleeping_trainable(settings: RunSettings):
        resources = settings.resources
        return tune.with_resources(sleeping_trial, {"cpu": resources.cpus_per_trial, "gpu": resources.gpus_per_trial})

    # The project's Tuner, searcher and scheduler, with the sleeping trainable in place of run_trial
    # (which, like YOLO's and torchvision's, may run in a reused process).
    with (
        mock.patch.object(project_tuner, "make_trainable", sleeping_trainable),
        mock.patch.object(project_tuner, "reuse_processes", lambda settings: True),
        _fresh_actors(args.fresh_actors),
    ):
        tuner = project_tuner.build_tuner(settings, space, experiment_dir, output="quiet")
    with contextlib.redirect_stdout(io.StringIO()):  # Tune's own progress tables: not this report
        results = tuner.fit()
    if results.num_errors:  # e.g. another `ray stop --force` on this host killed the simulated nodes
        raise SystemExit(f"{results.num_errors} of {len(results)} trials failed: {results.errors[0]}"[:500])
    spans = [Span(r.metrics["bench/start"], r.metrics["bench/end"]) for r in results if r.metrics]
    if len(spans) != args.trials:
        raise SystemExit(f"only {len(spans)} of {args.trials} trials reported")
    return plan, spans


@contextlib.contextmanager
def _fresh_actors(enabled: bool) -> Iterator[None]:
    """build_tuner with reuse_actors=False, when enabled."""
    from ray import tune

    if not enabled:
        yield
        return
    make_config = tune.TuneConfig
    with mock.patch.object(tune, "TuneConfig", lambda **kw: make_config(**{**kw, "reuse_actors": False})):
        yield


def busy_fraction(spans: list[Span], slots: int, begin: float, end: float) -> float:
    busy = sum(max(0.0, min(s.end, end) - max(s.start, begin)) for s in spans)
    return busy / (slots * (end - begin))


def running_counts(spans: list[Span]) -> list[tuple[float, int]]:
    """(time, trials running from then on), in time order."""
    events = sorted([(s.start, 1) for s in spans] + [(s.end, -1) for s in spans])
    counts, running = [], 0
    for at, change in events:
        running += change
        counts.append((at, running))
    return counts


def mean_running(counts: list[tuple[float, int]], begin: float, end: float) -> float:
    area, previous = 0.0, (begin, 0)
    for at, running in counts:
        if at > begin:
            area += previous[1] * (min(at, end) - max(previous[0], begin))
        if at >= end:
            break
        previous = (at, running)
    return area / (end - begin)


def summarize(gpus_per_trial: float, plan: Resources, spans: list[Span]) -> dict[str, str]:
    counts = running_counts(spans)
    first = min(s.start for s in spans)
    last_start = max(s.start for s in spans)
    last_end = max(s.end for s in spans)
    full = next((at for at, running in counts if running >= plan.slots), None)
    steady = full is not None and last_start - full > 1.0
    per_node = "+".join(map(str, sorted(plan.node_slots, reverse=True)))
    return {
        "gpus/trial": f"{gpus_per_trial:g}",
        "cpus/trial": f"{plan.cpus_per_trial:g}",
        "slots (per node)": f"{plan.slots} ({per_node})",
        "max concurrent": str(max(running for _, running in counts)),
        "ramp-up s": f"{full - first:.1f}" if full is not None else "never full",
        "mean concurrent, steady": f"{mean_running(counts, full, last_start):.2f}" if steady else "-",
        "busy, steady": f"{busy_fraction(spans, plan.slots, full, last_start):.1%}" if steady else "-",
        "busy, whole run": f"{busy_fraction(spans, plan.slots, first, last_end):.1%}",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpus-per-trial", type=float, nargs="+", default=[1.0, 0.5, 0.25])
    parser.add_argument("--trials", type=int, default=32)
    parser.add_argument(
        "--epoch-s",
        type=float,
        default=1.0,
        help="seconds per simulated epoch on one whole GPU (a trial on g GPUs: epoch-s / g)",
    )
    parser.add_argument("--max-epochs", type=int, default=9, help="ASHA max_t (grace 1, reduction factor 3)")
    parser.add_argument("--layout", choices=["cluster", "single"], default="cluster")
    parser.add_argument(
        "--fresh-actors",
        action="store_true",
        help="a new worker process per trial (reuse_actors=False), for comparison",
    )
    parser.add_argument("--quick", action="store_true", help="16 trials of 0.5 s epochs, 1 GPU per trial only")
    args = parser.parse_args()
    if args.quick:
        args.trials, args.gpus_per_trial, args.epoch_s = 16, [1.0], 0.5

    import ray

    actors = "a new process per trial" if args.fresh_actors else "reused"
    print(
        f"{args.trials} trials, epochs of {args.epoch_s:g} s / gpus-per-trial, ASHA max_t {args.max_epochs}, "
        f"layout {args.layout}, actors {actors}; {time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs",
        flush=True,
    )
    cluster = start_ray(args.layout)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for i, gpt in enumerate(args.gpus_per_trial):
                started = time.perf_counter()
                plan, spans = run_search(gpt, args, Path(tmp))
                row = summarize(gpt, plan, spans)
                load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
                print(
                    f"packing: {gpt:g} GPU/trial done in {time.perf_counter() - started:.1f}s, load average {load}",
                    file=sys.stderr,
                )
                if i == 0:  # rows as they come: a later failure (a killed Ray) keeps the earlier ones
                    print("| " + " | ".join(row) + " |\n|" + "---|" * len(row))
                print("| " + " | ".join(row.values()) + " |", flush=True)
    finally:
        ray.shutdown()
        if cluster is not None:
            cluster.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
