"""The one figure that represents a trial: its score.

A trial's score is the best, over its epochs so far, of the mean of the search metric over the
last `SCORE_WINDOW` epochs (fewer at the start). Why not the best epoch: on small data trained from
scratch AP jumps by several points between consecutive epochs, and the maximum of 30 such numbers
is an optimistic, unrepeatable figure (the winner's curse). Why not the last epoch: it punishes a
trial for one late dip. The trailing mean is less noisy, and its best-so-far form never decreases,
so ASHA's rungs and TPE's intermediate values compare like with like.

The trial loop reports the score (`SCORE_KEY`, Ray Tune's metric: ASHA, Optuna and the checkpoint
order see it) and the window mean of the epoch (`WINDOW_KEY`: which checkpoint is the best one)
in every result row; the analysis recomputes it from a trial's history with the same functions,
for any metric, so experiments written before the score existed are ranked the same way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

SCORE_KEY = "segtune/score"  # best trailing-window mean so far: the Tune metric
WINDOW_KEY = "segtune/window"  # the trailing-window mean ending at this epoch: the checkpoint order
SCORE_WINDOW = 3


def window_means(values: Sequence[float], window: int = SCORE_WINDOW) -> list[float]:
    """The mean of the last `window` values ending at each position (fewer at the start)."""
    means = []
    for i in range(len(values)):
        recent = values[max(0, i + 1 - window) : i + 1]
        means.append(math.fsum(recent) / len(recent))
    return means


def best_window(values: Sequence[float], mode: str, window: int = SCORE_WINDOW) -> tuple[int, float] | None:
    """(index of the epoch ending the best window, the score), or None without values. Ties go to
    the later epoch, as Ray's checkpoint manager keeps the later of two equally scored checkpoints."""
    means = window_means(values, window)
    if not means:
        return None
    sign = 1.0 if mode == "max" else -1.0
    best = max(range(len(means)), key=lambda i: (sign * means[i], i))
    return best, means[best]


class RunningScore:
    """The score of a trial in progress: feed one metric value per epoch."""

    def __init__(self, mode: str, values: Sequence[float] = (), window: int = SCORE_WINDOW) -> None:
        self.mode = mode
        self.window = window
        self.values = [float(v) for v in values]

    def add(self, value: float) -> dict[str, float]:
        """Record this epoch's value; the result-row entries of this epoch."""
        self.values.append(float(value))
        _, score = best_window(self.values, self.mode, self.window)
        return {WINDOW_KEY: window_means(self.values[-self.window :], self.window)[-1], SCORE_KEY: score}
