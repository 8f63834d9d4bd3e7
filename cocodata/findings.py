"""Findings about a dataset: errors and warnings grouped by file and kind, reported one line each.

Every problem is collected (not just the first): the first case of each kind is spelled out with
where it is and how to fix it, the rest are counted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from segtune.core.errors import DataError

MAX_NAMES = 5  # names listed in one grouped finding


@dataclass
class _Group:
    severity: str
    what: str
    fix: str
    count: int = 1
    names: list[str] = field(default_factory=list)


class Findings:
    """Errors and warnings grouped by (file, kind): the first case spelled out, the rest counted."""

    def __init__(self) -> None:
        self._groups: dict[tuple[str, str], _Group] = {}

    def error(self, where: str, kind: str, what: str, fix: str, name: str = "") -> None:
        self._add("error", where, kind, what, fix, name)

    def warn(self, where: str, kind: str, what: str, fix: str = "", name: str = "") -> None:
        self._add("warning", where, kind, what, fix, name)

    def _add(self, severity: str, where: str, kind: str, what: str, fix: str, name: str) -> None:
        group = self._groups.get((where, kind))
        if group is None:
            self._groups[(where, kind)] = _Group(severity, what, fix)
            return
        group.count += 1
        if name and len(group.names) < MAX_NAMES:
            group.names.append(name)

    def _lines(self, severity: str) -> list[str]:
        lines = []
        for (where, _), g in self._groups.items():
            if g.severity != severity:
                continue
            line = f"{where}: {g.what}" + (f"; {g.fix}" if g.fix else "")
            if g.count > 1:
                listed = ""
                if g.names:
                    listed = ": " + ", ".join(g.names) + (", ..." if g.count - 1 > len(g.names) else "")
                line += f" (and {g.count - 1} more like it{listed})"
            lines.append(line)
        return lines

    @property
    def errors(self) -> list[str]:
        return self._lines("error")

    @property
    def warnings(self) -> list[str]:
        return self._lines("warning")

    def raise_if_errors(self, log: Callable[[str], None]) -> None:
        """Raise DataError naming the first problem; with several, log them all first."""
        errors = self.errors
        if not errors:
            return
        message = errors[0]
        if len(errors) > 1:
            for line in errors:
                log(f"data error: {line}")
            message += f" [{len(errors) - 1} more problem(s) listed above]"
        raise DataError(message, errors)
