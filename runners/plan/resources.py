"""Per-trial resources and how many trials run at once, planned node by node.

Ray places a trial on one node, so a plan made from cluster totals can ask for a CPU count that
no GPU node has (the trial stays PENDING forever) or leave GPUs idle. `plan` works from the list
of alive nodes only and needs no Ray, so every cluster layout can be unit-tested;
`plan_resources` reads the nodes of the connected Ray cluster and calls it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from segtune.trainers.base import ConfigError

# Ray resources are floats (0.25 GPU, 8.0 CPUs): floor(1.0 / 0.25) must not become 3.
_EPS = 1e-9
_MAX_DEFAULT_WORKERS = 8


@dataclass(frozen=True)
class Resources:
    cpus_per_trial: float
    gpus_per_trial: float
    workers: int
    max_concurrent: int
    cluster_gpus: float
    cluster_cpus: float
    node_slots: tuple[int, ...] = ()  # trials each node holds at once, in the order of the nodes given
    idle_gpu_slots: int = 0  # GPU slots no trial can use: their node lacks the CPUs of a trial

    @property
    def slots(self) -> int:
        return sum(self.node_slots)

    @property
    def warning(self) -> str:
        """One line when GPUs will idle for lack of CPUs, else ''."""
        if not self.idle_gpu_slots:
            return ""
        return (
            f"{self.idle_gpu_slots} GPU slot(s) stay idle: their nodes have fewer than "
            f"{self.cpus_per_trial:g} CPUs per trial; lower --cpus-per-trial to use them"
        )


def plan(
    nodes: Sequence[Mapping[str, float]],
    gpus_per_trial: float | None,
    cpus_per_trial: float | None,
    workers: int | None,
    num_samples: int,
) -> Resources:
    """Resources per trial and concurrency for `nodes` (each alive node's resources, e.g.
    {"CPU": 32, "GPU": 4}); None means the default. Raises ConfigError when no node fits a trial."""
    cluster_gpus = sum(node.get("GPU", 0) for node in nodes)
    cluster_cpus = sum(node.get("CPU", 0) for node in nodes)
    gpt = gpus_per_trial if gpus_per_trial is not None else (1.0 if cluster_gpus > 0 else 0.0)
    if gpt > 0:
        cpt, node_slots, idle = _plan_gpu_trials(nodes, gpt, cpus_per_trial)
    else:
        cpt, node_slots, idle = _plan_cpu_trials(nodes, cpus_per_trial)
    n_workers = workers if workers is not None else int(min(_MAX_DEFAULT_WORKERS, max(0, cpt - 1)))
    max_concurrent = max(1, min(num_samples, sum(node_slots)))
    return Resources(cpt, gpt, n_workers, max_concurrent, cluster_gpus, cluster_cpus, tuple(node_slots), idle)


def plan_resources(
    gpus_per_trial: float | None, cpus_per_trial: float | None, workers: int | None, num_samples: int
) -> Resources:
    """`plan` for the alive nodes of the Ray cluster this process is connected to."""
    import ray

    nodes = [dict(node["Resources"]) for node in ray.nodes() if node.get("Alive")]
    return plan(nodes, gpus_per_trial, cpus_per_trial, workers, num_samples)


def gpu_slots(node_gpus: float, gpus_per_trial: float) -> int:
    """Trials of `gpus_per_trial` GPUs that fit on a node's GPUs.

    Ray takes a fractional request from a single GPU, so 0.3 GPU packs 3 trials per GPU (not
    4 GPUs / 0.3 = 13 on a 4-GPU node); a request of whole GPUs may span the node's GPUs."""
    if gpus_per_trial < 1:
        return math.floor(node_gpus + _EPS) * math.floor(1 / gpus_per_trial + _EPS)
    return math.floor(node_gpus / gpus_per_trial + _EPS)


def _cpu_slots(node_cpus: float, cpus_per_trial: float) -> int:
    return math.floor(node_cpus / cpus_per_trial + _EPS)


def _plan_gpu_trials(
    nodes: Sequence[Mapping[str, float]], gpt: float, cpus_per_trial: float | None
) -> tuple[float, list[int], int]:
    if gpt > 1 and abs(gpt - round(gpt)) > _EPS:
        raise ConfigError(
            f"--gpus-per-trial {gpt:g} cannot be split: above 1 Ray takes whole GPUs only; "
            f"use {math.floor(gpt)} or {math.ceil(gpt)} (fractions below 1 share a GPU)"
        )
    by_gpu = [gpu_slots(node.get("GPU", 0), gpt) for node in nodes]
    if not any(by_gpu):
        most = max((node.get("GPU", 0) for node in nodes), default=0)
        raise ConfigError(
            f"--gpus-per-trial {gpt:g} is more than any node has ({most:g} GPUs); "
            f"lower it (fractions like 0.5 share a GPU)"
        )
    # CPU-only nodes (a typical head node) hold no GPU trial, so their CPUs count for nothing here.
    gpu_nodes = [(node.get("CPU", 0), slots) for node, slots in zip(nodes, by_gpu) if slots]
    cpt = cpus_per_trial if cpus_per_trial is not None else _default_cpus_per_gpu_trial(gpu_nodes)
    most_cpus = max(cpus for cpus, _ in gpu_nodes)
    if cpt > most_cpus + _EPS:
        if cpus_per_trial is None:
            raise ConfigError(
                f"no node with GPUs has a CPU for a trial (at most {most_cpus:g} CPUs); start Ray there "
                f"with --num-cpus, or pass a fractional --cpus-per-trial"
            )
        raise ConfigError(
            f"--cpus-per-trial {cpt:g} is more than any node with GPUs has ({most_cpus:g} CPUs); lower it"
        )
    node_slots = [min(slots, _cpu_slots(node.get("CPU", 0), cpt)) for node, slots in zip(nodes, by_gpu)]
    return cpt, node_slots, sum(by_gpu) - sum(node_slots)


def _default_cpus_per_gpu_trial(gpu_nodes: list[tuple[float, int]]) -> float:
    """The most CPUs a trial can have while every GPU slot of every node can still run one.

    Every trial asks Ray for the same CPUs wherever it lands, so the GPU node with the fewest CPUs
    per GPU slot sets the figure: more would idle some of its GPUs, and GPU time is what a search
    is short of. At least 1: a trial is a training process that needs a core of its own."""
    return float(max(1, min(math.floor(cpus / slots + _EPS) for cpus, slots in gpu_nodes)))


def _plan_cpu_trials(
    nodes: Sequence[Mapping[str, float]], cpus_per_trial: float | None
) -> tuple[float, list[int], int]:
    cpt = cpus_per_trial if cpus_per_trial is not None else 1.0
    most_cpus = max((node.get("CPU", 0) for node in nodes), default=0)
    if cpt > most_cpus + _EPS:
        if cpus_per_trial is None:
            raise ConfigError(
                f"no Ray node has a CPU for a trial (at most {most_cpus:g} CPUs); start Ray with --num-cpus, "
                f"or pass a fractional --cpus-per-trial"
            )
        raise ConfigError(f"--cpus-per-trial {cpt:g} is more than any node has ({most_cpus:g} CPUs); lower it")
    return cpt, [_cpu_slots(node.get("CPU", 0), cpt) for node in nodes], 0
