"""Ends the processes of the local Ray a driver started once that driver is gone, however it went.

Ray ties its head processes (GCS, raylet, dashboard, monitors) to the driver that started them:
the kernel kills them when it dies (PR_SET_PDEATHSIG). The raylet's own children are not tied to
anything: after a `kill -9` of `runners/tune.py` its DashboardAgent and RuntimeEnvAgent notice the
dead raylet, then wait for the dead GCS to take their report, and live on as orphans (about
180 MB, a minute or more; indefinitely when the wait hangs).

The driver starts this script before Ray, with a pipe on its stdin whose write end only the
driver holds: end of file means the driver has exited. Until then it notes, every second, the
driver's descendants (the processes of that Ray session: nothing else descends from the
driver); then it terminates those still running (psutil checks start times: a reused pid is never
hit), and kills what is left after a short grace. Ctrl-C in the terminal is for the driver: this
script ignores SIGINT.

    python runners/reaper.py DRIVER_PID   (stdin: the driver's pipe)
"""
from __future__ import annotations

import os
import select
import signal
import subprocess
import sys

POLL_S = 1.0
GRACE_S = 3.0


def watch(driver_pid: int) -> int:
    import psutil

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    me = os.getpid()
    try:
        driver = psutil.Process(driver_pid)
    except psutil.NoSuchProcess:
        return 0
    seen: dict[int, psutil.Process] = {}
    while True:
        ready, _, _ = select.select([sys.stdin], [], [], POLL_S)
        if ready and not os.read(sys.stdin.fileno(), 4096):
            break  # the driver is gone: its end of the pipe was closed by the kernel
        try:
            for process in driver.children(recursive=True):
                if process.pid != me and process.pid not in seen:
                    seen[process.pid] = process
        except psutil.NoSuchProcess:
            break
    left = [p for p in seen.values() if p.is_running()]  # is_running compares start times
    for process in list(left):
        try:
            left += [c for c in process.children(recursive=True) if c.pid != me and c not in left]
        except psutil.NoSuchProcess:
            pass
    for process in left:
        try:
            process.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(left, timeout=GRACE_S)
    for process in alive:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    return 0


_started: list[subprocess.Popen] = []  # held for the driver's lifetime: closing the pipe means "driver gone"


def start() -> None:
    """Start the reaper for the calling process (the driver), once."""
    if _started or sys.platform not in ("linux", "darwin"):  # select() on a pipe; Windows has job objects
        return
    _started.append(subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), str(os.getpid())],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    ))


if __name__ == "__main__":
    sys.exit(watch(int(sys.argv[1])))
