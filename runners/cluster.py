"""Ray itself: start a local instance or join a cluster, and plan what each trial gets of it."""
from __future__ import annotations

import math
import socket
from dataclasses import dataclass

from core.errors import ConfigError


@dataclass(frozen=True)
class Resources:
    cpus_per_trial: float
    gpus_per_trial: float
    workers: int
    max_concurrent: int
    cluster_gpus: float
    cluster_cpus: float


def init_ray(address: str | None) -> None:
    import ray

    if address and address != "auto":
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"--address {address!r} is not HOST:PORT (e.g. 10.0.0.5:6379) or 'auto'")
        try:  # Ray itself retries for a long time before it gives up on a dead address
            socket.create_connection((host, int(port)), timeout=5).close()
        except OSError as exc:
            raise ConfigError(
                f"cannot reach a Ray cluster at {address} ({exc.strerror or exc}); start one with "
                f"'ray start --head' or fix --address"
            ) from None
    if not address:  # a local Ray of our own: its processes end with this driver, however it ends
        from runners import reaper

        reaper.start()
    try:
        # Trial output (framework progress bars) goes to each trial's files, not to this terminal.
        # Without --address a fresh local Ray: never silently join a cluster someone else started here.
        ray.init(address=address or "local", include_dashboard=False, ignore_reinit_error=True,
                 log_to_driver=False, logging_level="WARNING")
    except ConnectionError as exc:
        raise ConfigError(
            f"cannot connect to the Ray cluster at {address}: {last_line(str(exc))}; check --address "
            f"(a token-protected cluster also needs RAY_AUTH_MODE=token and its ~/.ray/auth_token here)"
        ) from None


def plan_resources(gpus_per_trial: float | None, cpus_per_trial: float | None, workers: int | None,
                   num_samples: int) -> Resources:
    """Trials per GPU (or CPU) slot; fail now rather than leave trials PENDING forever."""
    import ray

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    node_gpus = max((n["Resources"].get("GPU", 0) for n in nodes), default=0)
    node_cpus = max((n["Resources"].get("CPU", 0) for n in nodes), default=1)
    total = ray.cluster_resources()
    cluster_gpus, cluster_cpus = total.get("GPU", 0), total.get("CPU", 1)

    gpt = gpus_per_trial if gpus_per_trial is not None else (1.0 if cluster_gpus > 0 else 0.0)
    if gpt > node_gpus:
        raise ConfigError(
            f"--gpus-per-trial {gpt:g} is more than any node has ({node_gpus:g} GPUs); "
            f"lower it (fractions like 0.5 share a GPU)"
        )
    if gpt > 0:
        slots = sum(math.floor(n["Resources"].get("GPU", 0) / gpt + 1e-9) for n in nodes)
        cpt = cpus_per_trial or max(1.0, math.floor(cluster_cpus / max(1, slots)))
    else:
        cpt = cpus_per_trial or 1.0
    if cpt > node_cpus:
        raise ConfigError(f"--cpus-per-trial {cpt:g} is more than any node has ({node_cpus:g} CPUs); lower it")
    cpu_slots = sum(math.floor(n["Resources"].get("CPU", 0) / cpt + 1e-9) for n in nodes)
    slots = min(slots, cpu_slots) if gpt > 0 else cpu_slots
    n_workers = workers if workers is not None else int(min(8, max(0, cpt - 1)))
    return Resources(cpt, gpt, n_workers, max(1, min(num_samples, slots)), cluster_gpus, cluster_cpus)


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else "unknown error"
