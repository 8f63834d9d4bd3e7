"""The one error type for the user's mistakes, and the one place that turns it into an exit.

Every layer raises a `UserError` (or one of its kinds below) whose message is one line naming the
problem and the fix. The command-line scripts run their `main` through `run_cli`, which prints
`<prog>: error: <message>` on stderr and exits with status 2; nothing else catches these errors.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn


class UserError(ValueError):
    """A problem the user can fix: one line that names the problem and the fix."""


class ConfigError(UserError):
    """A bad option, parameter, model or weights file."""


class SpaceError(UserError):
    """A search-space file that cannot be used."""


class DataError(UserError):
    """A dataset that cannot be used; `problems` lists every finding (the message names the first)."""

    def __init__(self, message: str, problems: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.problems: tuple[str, ...] = tuple(problems) or (message,)


class ExperimentError(UserError):
    """An experiment directory that cannot be read, or analysis options that do not fit it."""


USAGE_EXIT_STATUS = 2


def not_writable(path: object, exc: OSError, option: str = "--out") -> UserError:
    """The one-line error for an output location the process cannot write."""
    return UserError(f"cannot write to {path} ({exc.strerror or exc}); choose another {option}")


def run_cli(prog: str, main: Callable[[], int]) -> int:
    """Run a script's `main`; a UserError becomes one stderr line and exit status 2."""
    try:
        return main()
    except UserError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return USAGE_EXIT_STATUS


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (problem and fix) and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(USAGE_EXIT_STATUS, f"{self.prog}: error: {message}; see --help\n")
