"""The command line of `segtune tune` (`python runners/tune.py`): parsed and checked here, once."""
from __future__ import annotations

__all__ = ["main"]


def main(argv: list[str] | None = None, prog: str = "segtune tune") -> int:
    """`segtune tune ARGS`; returns the exit status (2 for bad input, 130 when interrupted)."""
    from segtune.runners.launch import main as launch_main

    return launch_main(argv, prog)
