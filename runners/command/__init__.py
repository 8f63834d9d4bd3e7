"""The command line of `segtune tune` (`python runners/tune.py`): parsed and checked here, once, into
a frozen `TuneRequest` (request.py) that runners/launch.py carries out."""

from __future__ import annotations

import sys

__all__ = ["PROG", "main"]

PROG = "tune.py"


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    """`segtune tune ARGS`; returns the exit status (2 for bad input, 130 when interrupted)."""
    from segtune.core.errors import run_cli
    from segtune.runners.command.request import parse_request
    from segtune.runners.launch import launch

    try:
        return run_cli(prog, lambda: launch(parse_request(argv, prog)))
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; continue later with --resume --name <name>", file=sys.stderr)
        return 130
