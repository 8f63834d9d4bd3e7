"""How many trials of finished searches never trained: `python bench/untrained_trials.py EXP_DIR...`.

For each experiment (a `runners/tune.py` output directory): search trials (confirmation trials
apart), how many ended with segm/AP below 0.5 (AP 0 in every table), how many never reached 0.5 in
any epoch, the epochs they cost, and the epochs of the whole search. Run it on a default search
before and after a change to the search spaces, the start points or ASHA's grace period.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from segtune.analysis.trials import load_experiment

REPO_ROOT = Path(__file__).resolve().parents[1]

ZERO = 0.5  # segm/AP in percent below which a trial counts as "AP 0"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiments", nargs="+", type=Path)
    args = parser.parse_args()
    print(
        f"{'experiment':28s} {'trials':>6s} {'end at AP 0':>11s} {'never > 0.5':>11s} {'their epochs':>12s} "
        f"{'epochs':>6s} {'best score':>10s}"
    )
    for path in args.experiments:
        exp = load_experiment(path, "segm/AP", "max")
        search = [t for t in exp.trials if not t.confirm_of and t.history]
        aps = {t.trial_id: [float(r.get("segm/AP", 0.0)) for r in t.history] for t in search}
        ended = [t for t in search if aps[t.trial_id][-1] < ZERO]
        never = [t for t in search if max(aps[t.trial_id]) < ZERO]
        best = max((t.best_value for t in search if t.best_value is not None), default=float("nan"))
        print(
            f"{path.name:28s} {len(search):6d} {len(ended):11d} {len(never):11d} "
            f"{sum(t.epochs for t in ended):12d} {sum(t.epochs for t in search):6d} {best:10.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
