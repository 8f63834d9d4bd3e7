"""Which TPE settings help at segtune's budgets, on a cheap synthetic objective (no training).

    python bench/tpe_settings.py [--seeds 40] [--budgets 8 16 32] [--noise 2.0]

The objective imitates a from-scratch YOLO search on the CPU space (search_spaces/yolo_cpu.yaml,
the same 11 keys and ranges): an AP that peaks at a learning rate depending on the optimizer (SGD
wants ~4x AdamW's), falls off with the other keys, is 0 for configurations that do not train in the
budget (the cliff most random trials fall off), and carries seed noise. Trials are proposed two at
a time (ask, ask, tell, tell), as on a 2-slot machine, so constant liar matters. For each setting it
prints the mean over search seeds of the best noise-free value found, and the share of trials at 0.
Ratios between rows of one run are the result; the absolute numbers mean nothing outside this toy.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from pathlib import Path

import numpy as np
import optuna

from segtune.runners.plan.budget import plan_sampler
from segtune.search_spaces.space import load_space

REPO_ROOT = Path(__file__).resolve().parents[1]

SPACE = load_space(REPO_ROOT / "search_spaces" / "yolo_cpu.yaml").searched
BEST_LR = {"SGD": 0.016, "AdamW": 0.004}
OPTIMA = {
    "lrf": 0.2,
    "momentum": 0.92,
    "weight_decay": 1e-4,
    "warmup_epochs": 1.0,
    "box": 7.5,
    "cls": 1.0,
    "mosaic": 0.4,
    "scale": 0.5,
    "fliplr": 0.3,
}


def true_value(p: dict) -> float:
    """Noise-free AP of a configuration: 40 at the optimum, 0 beyond the cliff."""
    quality = -((math.log(p["lr0"] / BEST_LR[p["optimizer"]]) / 0.6) ** 2)
    for key, best in OPTIMA.items():
        d = SPACE[key]
        low, high = (math.log(d.low), math.log(d.high)) if d.log else (d.low, d.high)
        x, b = (math.log(p[key]), math.log(best)) if d.log else (p[key], best)
        quality -= 0.35 * ((x - b) / (high - low)) ** 2 * 4
    value = 40.0 * math.exp(quality)
    return value if value > 8.0 else 0.0  # did not train within the budget: AP 0


def run(sampler_factory, budget: int, seed: int, noise: float) -> tuple[float, int]:
    rng = np.random.default_rng(1000 + seed)
    study = optuna.create_study(direction="maximize", sampler=sampler_factory(budget, seed))
    best, zeros = 0.0, 0
    while len(study.trials) < budget:
        batch = [study.ask(SPACE) for _ in range(min(2, budget - len(study.trials)))]
        for trial in batch:
            value = true_value(trial.params)
            best, zeros = max(best, value), zeros + (value == 0.0)
            study.tell(trial, value + (rng.normal(0, noise) if value else 0.0))
    return best, zeros


def settings() -> dict:
    return {
        "random": lambda budget, seed: optuna.samplers.RandomSampler(seed=seed),
        "old: independent, 10 startup": lambda b, s: optuna.samplers.TPESampler(
            seed=s, n_startup_trials=10, multivariate=False, constant_liar=False
        ),
        "independent, budget/4 startup": lambda b, s: optuna.samplers.TPESampler(
            seed=s, n_startup_trials=plan_sampler(b).n_startup_trials, multivariate=False, constant_liar=False
        ),
        "multivariate": lambda b, s: optuna.samplers.TPESampler(
            seed=s, n_startup_trials=plan_sampler(b).n_startup_trials, multivariate=True, constant_liar=False
        ),
        "multivariate + constant liar (segtune)": lambda b, s: optuna.samplers.TPESampler(
            seed=s, n_startup_trials=plan_sampler(b).n_startup_trials, multivariate=True, constant_liar=True
        ),
        "multivariate + group + constant liar": lambda b, s: optuna.samplers.TPESampler(
            seed=s, n_startup_trials=plan_sampler(b).n_startup_trials, multivariate=True, group=True, constant_liar=True
        ),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=40)
    parser.add_argument("--budgets", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--noise", type=float, default=2.0, help="sd of the seed noise on a trained trial's AP")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    import warnings

    warnings.simplefilter("ignore")  # group is experimental
    header = f"{'setting':42s}" + "".join(f"  {f'best@{b}':>12s}  {f'AP 0 @{b}':>8s}" for b in args.budgets)
    print(header + "\n" + "-" * len(header))
    reference = {}
    for name, factory in settings().items():
        cells = []
        for budget in args.budgets:
            results = [run(factory, budget, seed, args.noise) for seed in range(args.seeds)]
            bests = [b for b, _ in results]
            mean = statistics.fmean(bests)
            reference.setdefault(budget, mean)
            cells.append(
                f"  {mean:5.1f} ({mean / reference[budget]:4.2f}x)"
                f"  {sum(z for _, z in results) / (budget * args.seeds):7.0%}"
            )
        print(f"{name:42s}" + "".join(cells))
    print(
        f"(mean over {args.seeds} search seeds of the best noise-free AP found; 'x': relative to random search; "
        f"'AP 0': share of trials that did not train)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
