"""Ends the processes of the local Ray a driver started once that driver is gone, however it went.

Ray ties its head processes (GCS, raylet, dashboard, monitors) to the driver that started them:
the kernel kills them when it dies (PR_SET_PDEATHSIG). The raylet's own children are not tied to
anything: after a `kill -9` of `segtune tune` its DashboardAgent and RuntimeEnvAgent notice the
dead raylet, then wait for the dead GCS to take their report, and live on as orphans (about
180 MB, a minute or more; indefinitely when the wait hangs).

The driver starts this script before Ray, with a pipe on its stdin whose write end only the
driver holds: end of file means the driver has exited. Until then it notes, every second, the
driver's descendants (the processes of that Ray session: nothing else descends from the
driver) and the session's directory (from its GCS's command line). Then it ends those still
running and every process whose stdout or stderr is a log in that session directory (Ray starts
each of its processes so): a worker the raylet started in the driver's last second, orphaned
before it was noted, is found so (Ray renames its processes, "ray::IDLE", so their command lines
do not say whose they are; someone's `tail -f` of a log is not hit).
Each is terminated, then killed after a short grace (psutil checks start times: a reused pid is
never hit).

    python runners/cluster/reaper.py DRIVER_PID   (stdin: the driver's pipe)
"""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys

POLL_S = 1.0
GRACE_S = 3.0
SESSION_DIR = re.compile(r"--session[-_]dir=(\S+)")


def watch(driver_pid: int) -> int:
    import psutil

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        driver = psutil.Process(driver_pid)
    except psutil.NoSuchProcess:
        return 0
    seen: dict[int, psutil.Process] = {}
    sessions: set[str] = set()
    while True:
        ready, _, _ = select.select([sys.stdin], [], [], POLL_S)
        if ready and not os.read(sys.stdin.fileno(), 4096):
            break  # the driver is gone: its end of the pipe was closed by the kernel
        try:
            new = [p for p in driver.children(recursive=True) if p.pid != os.getpid() and p.pid not in seen]
        except psutil.NoSuchProcess:
            break
        for process in new:
            seen[process.pid] = process
            sessions.update(_session_dirs(process))
    _end([p for p in seen.values() if p.is_running()] + _using(sessions))  # is_running compares start times
    return 0


def _session_dirs(process) -> set[str]:
    import psutil

    try:
        return set(SESSION_DIR.findall(" ".join(process.cmdline())))
    except psutil.Error:
        return set()


def _using(sessions: set[str]) -> list:
    """The processes whose stdout or stderr is a file in one of these Ray session directories."""
    import psutil

    if not sessions:
        return []
    found = []
    prefixes = tuple(os.path.join(s, "") for s in sessions)
    for process in psutil.process_iter():
        try:
            logs = [f.path for f in process.open_files() if f.fd in (1, 2)]
            if process.pid != os.getpid() and any(path.startswith(prefixes) for path in logs):
                found.append(process)
        except psutil.Error:
            pass
    return found


def _end(processes: list) -> None:
    """Terminate these processes and what descends from them, then kill what is left after GRACE_S."""
    import psutil

    left = {p.pid: p for p in processes}
    for process in processes:
        try:
            left.update((c.pid, c) for c in process.children(recursive=True) if c.pid != os.getpid())
        except psutil.NoSuchProcess:
            pass
    for process in left.values():
        try:
            process.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(list(left.values()), timeout=GRACE_S)
    for process in alive:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass


_started: list[subprocess.Popen] = []  # held for the driver's lifetime: closing the pipe means "driver gone"


def start() -> None:
    """Start the reaper for the calling process (the driver), once."""
    if _started or sys.platform not in ("linux", "darwin"):  # select() on a pipe; Windows has job objects
        return
    _started.append(
        subprocess.Popen(
            [sys.executable, os.path.abspath(__file__), str(os.getpid())],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    )


if __name__ == "__main__":
    sys.exit(watch(int(sys.argv[1])))
