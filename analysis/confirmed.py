"""Confirmed configurations: the top configurations of a search, trained again with new seeds.

A confirmed configuration is judged by the mean and standard deviation of its confirmation trials'
scores (those that trained the full budget). Its original search trial is kept apart: it was chosen
because it scored high, so its score is biased upwards (the winner's curse) and enters no mean.
Used by the ranking (confirmed configurations first, by mean), rank.py, the closing summary, the
report's spread section and export_best.py (the best seed of the best confirmed configuration).
"""

from __future__ import annotations

import html
import math
import statistics
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from segtune.core.score import SCORE_WINDOW

if TYPE_CHECKING:
    from segtune.analysis.trials import TrialSummary


@dataclass
class ConfirmedConfig:
    original_id: str
    original: TrialSummary | None
    confirmations: list[TrialSummary] = field(default_factory=list)  # every confirmation trial, best first

    @property
    def counted(self) -> list[TrialSummary]:
        """The confirmation trials that trained the full budget: the ones the mean is made of."""
        return [t for t in self.confirmations if t.status == "finished" and t.best_value is not None]

    @property
    def scores(self) -> list[float]:
        return [t.best_value for t in self.counted]

    @property
    def seeds(self) -> int:
        return len(self.counted)

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.scores) if self.scores else None

    @property
    def sd(self) -> float | None:
        return statistics.stdev(self.scores) if len(self.scores) > 1 else None

    @property
    def best(self) -> TrialSummary | None:
        """The best of its seeds: the trial whose weights stand for the configuration."""
        return self.counted[0] if self.counted else None

    @property
    def members(self) -> list[TrialSummary]:
        return self.confirmations + ([self.original] if self.original is not None else [])


def confirmed_configs(trials: list[TrialSummary], mode: str) -> list[ConfirmedConfig]:
    """Every configuration that has confirmation trials; the ones with a mean first, best mean first."""
    sign = -1.0 if mode == "max" else 1.0
    by_id = {t.trial_id: t for t in trials}
    groups: dict[str, ConfirmedConfig] = {}
    for trial in trials:
        if trial.confirm_of:
            group = groups.setdefault(trial.confirm_of, ConfirmedConfig(trial.confirm_of, by_id.get(trial.confirm_of)))
            group.confirmations.append(trial)
    for group in groups.values():
        group.confirmations.sort(
            key=lambda t: (
                t.best_value is None or t.status != "finished",
                sign * (t.best_value or 0.0),
                t.confirm_seed or 0,
                t.trial_id,
            )
        )
    return sorted(groups.values(), key=lambda g: (g.mean is None, sign * (g.mean or 0.0), g.original_id))


def pooled_sd(groups: list[ConfirmedConfig]) -> float | None:
    """The seed-to-seed standard deviation pooled over every configuration with two or more seeds."""
    spread = [(g.seeds - 1, g.sd) for g in groups if g.sd is not None]
    dof = sum(n for n, _ in spread)
    return math.sqrt(sum(n * sd * sd for n, sd in spread) / dof) if dof else None


def lead_vs_spread(groups: list[ConfirmedConfig], metric: str) -> str:
    """Whether the winner's lead over the runner-up exceeds the noise between seeds, in one sentence."""
    scored = [g for g in groups if g.mean is not None]
    if not scored:
        return ""
    spread = pooled_sd(scored)
    spread_text = f"seed-to-seed sd {spread:.2f}" if spread is not None else "no seed-to-seed spread (one seed each)"
    if len(scored) == 1:
        return f"one configuration confirmed ({spread_text}); no runner-up to compare with"
    lead = abs(scored[0].mean - scored[1].mean)
    head = (
        f"the winner's lead over the runner-up (trial_{scored[1].original_id}) is {lead:.2f} {metric} score; "
        f"{spread_text}"
    )
    if spread is None:
        return head
    if lead > spread:
        return f"{head}: the lead is larger than the spread between seeds"
    return f"{head}: the lead is within the spread between seeds, so the two are not told apart at this budget"


def describe(group: ConfirmedConfig) -> str:
    """'21.34 +- 1.02 over 2 seeds' (mean +- sd of the confirmation scores)."""
    if group.mean is None:
        waiting = len(group.confirmations)
        return f"not confirmed yet ({waiting} confirmation trial{'s' * (waiting != 1)} unfinished)"
    sd = f" +- {group.sd:.2f}" if group.sd is not None else ""
    return f"{group.mean:.2f}{sd} over {group.seeds} seed{'s' * (group.seeds != 1)}"


def confirmation_html(groups: list[ConfirmedConfig], metric: str) -> str:
    """The report's section on confirmed configurations: a table, each row with a small strip plot of
    its seeds' scores (filled dots), its mean +- sd (bar) and the original search score (hollow)."""
    if not groups:
        return ""
    values = [v for g in groups for v in g.scores] + [
        g.original.best_value for g in groups if g.original is not None and g.original.best_value is not None
    ]
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    pad = (high - low) * 0.1 or 1.0
    low, high = low - pad, high + pad

    def x(value: float) -> float:
        return 10 + 280 * (value - low) / (high - low)

    rows = []
    for rank, group in enumerate(groups, 1):
        svg = ['<svg width="300" height="22">', '<line x1="10" y1="11" x2="290" y2="11" stroke="#ddd"/>']
        if group.mean is not None and group.sd is not None:
            svg.append(
                f'<line x1="{x(group.mean - group.sd):.1f}" y1="11" x2="{x(group.mean + group.sd):.1f}" '
                f'y2="11" stroke="#1f77b4" stroke-width="6" stroke-opacity="0.3"/>'
            )
        svg += [f'<circle cx="{x(v):.1f}" cy="11" r="4" fill="#1f77b4"/>' for v in group.scores]
        if group.original is not None and group.original.best_value is not None:
            svg.append(f'<circle cx="{x(group.original.best_value):.1f}" cy="11" r="4" fill="none" stroke="#d62728"/>')
        svg.append("</svg>")
        original = group.original.best_value if group.original is not None else None
        cells = [
            rank,
            f"trial_{group.original_id}",
            "" if group.mean is None else f"{group.mean:.2f}",
            "" if group.sd is None else f"{group.sd:.2f}",
            group.seeds,
            ", ".join(f"{v:.2f}" for v in group.scores),
            "" if original is None else f"{original:.2f}",
            f"trial_{group.best.trial_id}" if group.best else "",
        ]
        rows.append(
            "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + f"<td>{''.join(svg)}</td></tr>"
        )
    verdict = lead_vs_spread(groups, metric)
    verdict = verdict[:1].upper() + verdict[1:] + "." if verdict else ""
    head = [
        "rank",
        "configuration",
        f"{metric} mean",
        f"{metric} sd",
        "seeds",
        "seed scores",
        "search score (biased)",
        "best seed",
        f"spread ({low:.1f} .. {high:.1f})",
    ]
    return (
        f"<h2>Confirmed configurations</h2><p>The top configurations of the search trained again with new "
        f"seeds at the full budget. Ranked by the mean of the new seeds' scores (each the best mean of "
        f"<code>{html.escape(metric)}</code> over {SCORE_WINDOW} consecutive epochs); the search trial's own score "
        f"(hollow red) was selected for being high and enters no mean; the bar is mean +- sd. "
        f"{html.escape(verdict)}</p>"
        "<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>" + "".join(rows) + "</table>"
    )
