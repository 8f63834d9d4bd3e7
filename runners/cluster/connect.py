"""Ray itself: start a local instance (with its reaper) or join a cluster."""

from __future__ import annotations

import socket

from segtune.core.errors import ConfigError


def init_ray(address: str | None) -> None:
    """Start a local Ray for this driver (address None) or join the cluster at `address`.

    A local Ray is ours: the reaper (reaper.py) ends every process of it once this driver is gone,
    however it went, so that no Ray outlives `segtune tune` on a user's machine. A joined cluster is
    someone else's and is left running.

    Raises:
        ConfigError: `address` is malformed or unreachable, or Ray refuses the connection.
    """
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
        from segtune.runners.cluster import reaper

        reaper.start()
    try:
        # Trial output (framework progress bars) goes to each trial's files, not to this terminal.
        # Without --address a fresh local Ray: never silently join a cluster someone else started here.
        ray.init(
            address=address or "local",
            include_dashboard=False,
            ignore_reinit_error=True,
            log_to_driver=False,
            logging_level="WARNING",
        )
    except ConnectionError as exc:
        raise ConfigError(
            f"cannot connect to the Ray cluster at {address}: {last_line(str(exc))}; check --address "
            f"(a token-protected cluster also needs RAY_AUTH_MODE=token and its ~/.ray/auth_token here)"
        ) from None


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else "unknown error"
