"""Search efficiency, side by side at equal training epochs (issue 9, item 5).

    python bench/search_efficiency.py --quick     # demo data, 24-epoch budget, 2 seeds
    python bench/search_efficiency.py             # demo + microcontroller_seg, 3 seeds (hours on 2 cores)

Methods (every one trains YOLO11n-seg from scratch with the same fixed arguments, those of segtune's
CPU search space, `search_spaces/yolo_cpu.yaml`):
- segtune: the default search (TPE + ASHA) with `--budget-epochs`;
- segtune-random: the same with `--sampler random`; segtune-noasha: `--scheduler none`;
- ultralytics-genetic / ultralytics-ray: Ultralytics' own `model.tune()` and `model.tune(use_ray=True)`
  with iterations x epochs = the budget, its default search space (`bench/ultralytics_tuners.py`).
Every epoch of every search is scored by segtune's evaluator. Per (dataset, method, search seed) a
"cell": the search, then its winner (the configuration the method itself names best) trained again
with a fresh seed (1000 + search seed, the same for every method) at the full epochs per trial,
through `runners/tune.py --config`. Its confirmed `segm/AP` is that run's best epoch (bbox/AP at the
same epoch). "Epochs to reach random's best": when a search's best-so-far segm/AP (over all its
epochs, in time order) first reached random search's final best, the mean over random's seeds.

Resumable: a cell whose OUT/<dataset>/<method>/seed<k>/cell.json exists is not run again; a cell cut
short is started over (its search, or only its confirmation). Raw numbers: OUT/results.json and
OUT/results.csv; the table: OUT/table.md and stdout.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.efficiency_table import (
    METRIC,
    best_so_far,
    epochs_to_reach,
    format_table,
    method_rows,
    random_target,
    search_best,
    verdict,
)
from bench.seed_spread import space_with_imgsz

REPO_ROOT = Path(__file__).resolve().parents[1]

SHARED_DATASET = REPO_ROOT.parent / "shared" / "datasets" / "microcontroller_seg"
FRESH_SEED = 1000  # + search seed: the confirmation seed, never one a search trained with
# method -> (label, extra runners/tune.py options; None: an Ultralytics tuner)
METHODS: dict[str, tuple[str, list[str] | None]] = {
    "segtune": ("segtune default (TPE + ASHA)", ["--sampler", "tpe", "--scheduler", "asha"]),
    "segtune-random": ("segtune random search + ASHA", ["--sampler", "random", "--scheduler", "asha"]),
    "segtune-noasha": ("segtune TPE, no ASHA", ["--sampler", "tpe", "--scheduler", "none"]),
    "ultralytics-genetic": ("Ultralytics model.tune() (genetic)", None),
    "ultralytics-ray": ("Ultralytics model.tune(use_ray=True)", None),
}
LABELS = {name: label for name, (label, _) in METHODS.items()}


@dataclass(frozen=True)
class Profile:
    dataset: str
    data: Path | None  # None: segtune's built-in demo set
    imgsz: int
    max_epochs: int  # per trial / iteration
    budget: int  # training epochs per search


FULL = (Profile("demo", None, 128, 30, 150), Profile("microcontroller_seg", SHARED_DATASET, 192, 30, 150))
QUICK = (Profile("demo", None, 128, 8, 24),)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="demo data only, 8 epochs per trial, budget 24, 2 seeds")
    parser.add_argument("--seeds", type=int, default=None, help="search seeds per method (default 3; 2 with --quick)")
    parser.add_argument("--datasets", default=None, help="comma-separated subset of: demo, microcontroller_seg")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset of the methods")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="results directory (default runs/bench-search-efficiency[-quick]); reused to resume",
    )
    parser.add_argument("--budget", type=int, default=None, help="training epochs per search (overrides the profile)")
    parser.add_argument(
        "--epochs-per-trial",
        type=int,
        default=None,
        help="epochs per trial / iteration (overrides the profile; the budget should be a multiple)",
    )
    parser.add_argument("--cache-dir", type=Path, default=Path("~/.cache/segtune"))
    parser.add_argument("--concurrency", type=int, default=2, help="trials at a time in every search")
    args = parser.parse_args(argv)
    profiles = QUICK if args.quick else FULL
    if args.datasets:
        wanted = args.datasets.split(",")
        profiles = tuple(p for p in FULL + QUICK if p.dataset in wanted and (p in QUICK) == args.quick)
    profiles = tuple(
        dataclasses.replace(p, budget=args.budget or p.budget, max_epochs=args.epochs_per_trial or p.max_epochs)
        for p in profiles
    )
    methods = [m for m in args.methods.split(",") if m]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown or not profiles:
        parser.error(f"unknown methods {unknown} or no dataset chosen; methods: {', '.join(METHODS)}")
    seeds = range(args.seeds or (2 if args.quick else 3))
    out = (args.out or REPO_ROOT / "runs" / f"bench-search-efficiency{'-quick' if args.quick else ''}").resolve()
    bench = Bench(out, args.cache_dir.expanduser().resolve(), args.concurrency)
    failed = 0
    for profile in profiles:
        print(
            f"[bench] {profile.dataset}: budget {profile.budget} epochs per search, up to {profile.max_epochs} "
            f"per trial, imgsz {profile.imgsz}, seeds {list(seeds)}, {args.concurrency} trials at a time",
            flush=True,
        )
        for seed in seeds:  # seeds outermost: an interrupted run has every method at the same seeds
            for method in methods:
                failed += not bench.run_cell(profile, method, seed)
    bench.report(profiles, methods)
    return 1 if failed else 0


class Bench:
    def __init__(self, out: Path, cache_dir: Path, concurrency: int) -> None:
        self.out, self.cache_dir, self.concurrency = out, cache_dir, concurrency
        self.cpus_per_trial = max(1, (os.cpu_count() or 1) // concurrency)
        from segtune.runners.command.parser import build_parser

        # Once segtune confirms its winners itself (--confirm-top), the search must not: the bench
        # confirms every method's winner the same way, outside the epoch budget.
        options = build_parser()._option_string_actions
        self.no_confirm = ["--confirm-top", "0"] if "--confirm-top" in options else []

    # ---- one cell --------------------------------------------------------------------------
    def run_cell(self, profile: Profile, method: str, seed: int) -> bool:
        cell = self.out / profile.dataset / method / f"seed{seed}"
        if (cell / "cell.json").is_file():
            print(f"[bench] {profile.dataset} {method} seed {seed}: done before, kept", flush=True)
            return True
        try:
            search = self._search(profile, method, seed, cell)
            confirm = self._confirm(profile, method, seed, cell, search["winner"])
        except (subprocess.CalledProcessError, OSError, ValueError, KeyError) as exc:  # this cell only
            log = cell / ("confirm.log" if (cell / "search.json").is_file() else "search.log")
            tail = log.read_text(errors="replace")[-2000:] if log.is_file() else ""
            print(f"[bench] {profile.dataset} {method} seed {seed}: FAILED ({exc}); {log}:\n{tail}", flush=True)
            return False
        result = {
            "dataset": profile.dataset,
            "method": method,
            "seed": seed,
            "budget": profile.budget,
            "max_epochs": profile.max_epochs,
            "imgsz": profile.imgsz,
            **search,
            "confirm": confirm,
        }
        (cell / "cell.json").write_text(json.dumps(result, indent=1))
        return True

    def _search(self, profile: Profile, method: str, seed: int, cell: Path) -> dict[str, Any]:
        done = cell / "search.json"
        if done.is_file():
            return json.loads(done.read_text())
        if cell.exists():  # a search cut short: this bench's own scratch, started over
            shutil.rmtree(cell)
        cell.mkdir(parents=True)
        space = self._space_file(profile)
        started = time.time()
        print(f"[bench] {profile.dataset} {method} seed {seed}: searching ...", flush=True)
        if METHODS[method][1] is not None:
            command = [
                sys.executable,
                "runners/tune.py",
                "--framework",
                "yolo",
                "--space",
                str(space),
                "--max-epochs",
                str(profile.max_epochs),
                "--budget-epochs",
                str(profile.budget),
                "--seed",
                str(seed),
                "--storage",
                str(cell),
                "--name",
                "search",
                *self._common(profile),
                *METHODS[method][1],
                *self.no_confirm,
            ]
            self._run(command, cell / "search.log")
            search_s = time.time() - started
            search = {
                "records": segtune_records(cell / "search"),
                "winner": segtune_winner(cell / "search"),
                "search_s": search_s,
            }
        else:
            command = [
                sys.executable,
                "bench/ultralytics_tuners.py",
                "--method",
                method.split("-")[1],
                "--out",
                str(cell / "search"),
                "--epochs",
                str(profile.max_epochs),
                "--iterations",
                str(profile.budget // profile.max_epochs),
                "--seed",
                str(seed),
                "--fixed",
                json.dumps(fixed_args(space)),
                "--concurrency",
                str(self.concurrency),
                "--cache-dir",
                str(self.cache_dir),
                *(["--data", str(profile.data)] if profile.data else []),
            ]
            self._run(command, cell / "search.log")
            tuned = json.loads((cell / "search" / "ultralytics.json").read_text())
            winner = {**fixed_args(space), "optimizer": "AdamW", **tuned["winner"]}
            search = {
                "records": tuned["records"],
                "winner": winner,
                "search_s": time.time() - started - tuned["scoring_s"],
                "scoring_s": tuned["scoring_s"],
            }
        best = search_best(search["records"])
        print(
            f"[bench] {profile.dataset} {method} seed {seed}: search done in {search['search_s'] / 60:.1f} min, "
            f"{len(search['records'])} epochs, best {METRIC} {best if best is None else round(best, 1)}",
            flush=True,
        )
        done.write_text(json.dumps(search, indent=1))
        return search

    def _confirm(self, profile: Profile, method: str, seed: int, cell: Path, winner: dict[str, Any]) -> dict[str, Any]:
        """The winner trained again with a fresh seed, through segtune's own adapter and evaluator."""
        from segtune.analysis.trials import read_results

        if (cell / "confirm").exists():
            shutil.rmtree(cell / "confirm")
        fresh = FRESH_SEED + seed
        config = cell / "confirm.json"  # JSON is YAML: read by runners/tune.py --config
        config.write_text(json.dumps({"framework": "yolo", "params": {**winner, "seed": fresh}}, indent=1))
        started = time.time()
        self._run(
            [
                sys.executable,
                "runners/tune.py",
                "--framework",
                "yolo",
                "--config",
                str(config),
                "--max-epochs",
                str(profile.max_epochs),
                "--seed",
                str(fresh),
                "--storage",
                str(cell),
                "--name",
                "confirm",
                *self._common(profile),
            ],
            cell / "confirm.log",
        )
        rows = [r for d in sorted((cell / "confirm").glob("trial_*")) for r in read_results(d)]
        if not rows:
            raise subprocess.CalledProcessError(1, "confirm: no epoch reported")
        best = max(rows, key=lambda r: float(r.get(METRIC) or 0.0))
        confirm = {
            "seed": fresh,
            METRIC: float(best.get(METRIC) or 0.0),
            "bbox/AP": float(best.get("bbox/AP") or 0.0),
            "best_epoch": int(best["training_iteration"]),
            "epochs": len(rows),
            f"last {METRIC}": float(rows[-1].get(METRIC) or 0.0),
            "wall_s": time.time() - started,
        }
        print(
            f"[bench] {profile.dataset} {method} seed {seed}: winner retrained with seed {fresh}: {METRIC} "
            f"{confirm[METRIC]:.1f} (epoch {confirm['best_epoch']}/{len(rows)}) in {confirm['wall_s'] / 60:.1f} min",
            flush=True,
        )
        return confirm

    def _common(self, profile: Profile) -> list[str]:
        """Options of every segtune run: from scratch, as the Ultralytics tuners here (segtune's default would
        fine-tune COCO weights where it can have them: docs/PRETRAINED.md); the CPU; the data."""
        return [
            "--weights",
            "none",
            "--gpus-per-trial",
            "0",
            "--cpus-per-trial",
            str(self.cpus_per_trial),
            "--cache-dir",
            str(self.cache_dir),
            *(["--data", str(profile.data)] if profile.data else []),
        ]

    def _space_file(self, profile: Profile) -> Path:
        """segtune's CPU search space (whatever it is today) with this dataset's image size."""
        return space_with_imgsz("yolo", profile.imgsz, self.out / profile.dataset / "space.yaml")

    @staticmethod
    def _run(command: list[str], log: Path) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with open(log, "w") as handle:
            subprocess.run(command, cwd=REPO_ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT, check=True)

    # ---- the table -------------------------------------------------------------------------
    def report(self, profiles, methods: list[str]) -> None:
        everything: dict[str, Any] = {}
        tables = []
        csv_rows = []
        for profile in profiles:
            cells = [json.loads(p.read_text()) for p in sorted((self.out / profile.dataset).glob("*/seed*/cell.json"))]
            cells = [c for c in cells if c["method"] in methods]
            rows = method_rows(cells, methods)
            lines = verdict(rows, "segtune", ["ultralytics-genetic", "ultralytics-ray"])
            table = format_table(rows, LABELS)
            text = (
                f"### {profile.dataset}: budget {profile.budget} epochs, up to {profile.max_epochs} per trial, "
                f"imgsz {profile.imgsz}\n\n{table}\n\n" + "".join(f"- {line}\n" for line in lines)
            )
            print("\n" + text, flush=True)
            tables.append(text)
            everything[profile.dataset] = {"rows": rows, "verdict": lines, "cells": cells}
            target = random_target(cells)
            for c in cells:
                csv_rows.append(
                    {
                        "dataset": c["dataset"],
                        "method": c["method"],
                        "seed": c["seed"],
                        "epochs_spent": len(c["records"]),
                        "search_best": search_best(c["records"]),
                        "confirmed_segm_AP": c["confirm"][METRIC],
                        "confirmed_bbox_AP": c["confirm"]["bbox/AP"],
                        "epochs_to_random_best": (
                            epochs_to_reach(best_so_far(c["records"]), target) if target is not None else None
                        ),
                        "search_s": round(c["search_s"], 1),
                        "confirm_s": round(c["confirm"]["wall_s"], 1),
                    }
                )
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "results.json").write_text(json.dumps(everything, indent=1))
        (self.out / "table.md").write_text("\n".join(tables))
        if csv_rows:
            with open(self.out / "results.csv", "w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=list(csv_rows[0]))
                writer.writeheader()
                writer.writerows(csv_rows)
        print(f"[bench] raw results: {self.out / 'results.json'}, {self.out / 'results.csv'}", flush=True)


# ---- reading a segtune search ------------------------------------------------------------------
def segtune_records(experiment: Path) -> list[dict[str, Any]]:
    """Every reported epoch of every trial, with Ray's (whole-second) time of the report."""
    from segtune.analysis.trials import read_results

    records = []
    for trial in sorted(experiment.glob("trial_*")):
        for row in read_results(trial):
            records.append(
                {
                    "run": trial.name,
                    "epoch": int(row["training_iteration"]),
                    "time": float(row.get("timestamp") or 0),
                    METRIC: float(row.get(METRIC) or 0.0),
                    "bbox/AP": float(row.get("bbox/AP") or 0.0),
                }
            )
    return records


def segtune_winner(experiment: Path) -> dict[str, Any]:
    """The configuration segtune's own ranking names best (what rank.py and export_best.py would hand over)."""
    from segtune.analysis.ranking import best_trial
    from segtune.analysis.trials import load_experiment
    from segtune.search_spaces.space import thaw

    best = best_trial(load_experiment(experiment).trials)
    if best is None:
        raise subprocess.CalledProcessError(1, f"no trial of {experiment} has a score")
    return {k: thaw(v) for k, v in best.params.items()}


def fixed_args(space: Path) -> dict[str, Any]:
    """The training arguments the search space fixes (seed aside): every method trains with them."""
    from segtune.search_spaces.space import load_space, thaw

    return {k: thaw(v) for k, v in load_space(space).fixed.items() if k != "seed"}


if __name__ == "__main__":
    sys.exit(main())
