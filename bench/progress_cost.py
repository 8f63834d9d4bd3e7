"""What the terminal view costs the driver, measured in one run and printed as ratios.

    python bench/progress_cost.py

- the live block: one redraw of a search with 8 running trials and 256 trials in all, against the
  redraw interval (runners/view/progress.py REDRAW_EVERY_S);
- the parameter ranking: Optuna's PED-ANOVA over 16, 64 and 256 ended trials of the CPU YOLO space
  (11 searched keys), against the same interval. It runs once per 8 ended trials.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import optuna

from segtune.runners.view.progress import REDRAW_EVERY_S
from segtune.runners.view.progress_view import SearchView, important_params, live_block
from segtune.search_spaces.space import load_space

REPO_ROOT = Path(__file__).resolve().parents[1]


def _search(space, trials: int, running: int) -> SearchView:
    view = SearchView("segm/AP", "max", 30, trials, list(space.searched), name="bench")
    sampler = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for i in range(trials):
        params = sampler.ask(space.searched).params
        view.start(f"t{i:07d}", params)
        for epoch in range(1, 4):
            view.result(
                f"t{i:07d}", {"training_iteration": epoch, "segm/AP": 100 * params["lr0"] * epoch, "bbox/AP": 1.0}
            )
        if i < trials - running:
            view.end(f"t{i:07d}", "stopped early 3/30", failed=False, at=1.0)
    return view


def _seconds(call, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = load_space(REPO_ROOT / "search_spaces" / "yolo_cpu.yaml")
    view = _search(space, 256, running=8)
    redraw = _seconds(lambda: live_block(view, 600.0, 120), 200)
    print(
        f"live block (256 trials, 8 running): {redraw * 1e3:.3f} ms = "
        f"{redraw / REDRAW_EVERY_S:.2%} of the {REDRAW_EVERY_S} s redraw interval"
    )
    important_params(_search(space, 16, running=0), space.searched)  # Optuna's first call imports more
    for trials in (16, 64, 256):
        ended = _search(space, trials, running=0)
        cost = _seconds(lambda ended=ended: important_params(ended, space.searched), 5)
        print(
            f"PED-ANOVA ranking over {trials:>3} ended trials: {cost * 1e3:.1f} ms = "
            f"{cost / REDRAW_EVERY_S:.1%} of one redraw interval, once per 8 ended trials"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
