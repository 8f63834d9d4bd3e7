"""`--objective "segm/AP:max,cost/latency_ms:min"`: search for a trade-off instead of one metric.

With several objectives Ray's OptunaSearch hands Optuna a list of values per trial (Optuna's TPE
is multi-objective: MOTPE) and no intermediate values: ASHA, which compares trials on one number
at each rung, does not apply, and the search runs every trial to its end (Ray's FIFO scheduler,
`--time-budget` and the framework's own early stopping still end trials). The analysis ranks
trials by Pareto rank over the objectives, then by the first (analysis/pareto.py).
"""
from __future__ import annotations

import argparse

from segtune.cocodata.evaluator import METRIC_KEYS
from segtune.core.errors import ConfigError
from segtune.core.record import default_mode

# What a trial reports once per epoch that can be an objective besides the COCO metrics
# (runners/cost.py); `cost/latency_ms` is timed after epochs 1, 2, 4, 8, ... and repeated between.
COST_OBJECTIVES = ("cost/latency_ms", "cost/fps", "cost/params_m", "cost/train_mem_mb", "cost/infer_mem_mb",
                   "cost/epoch_time_s", "cost/train_time_s")
ASHA_NOTE = "ASHA does not apply to several objectives (it ranks trials on one number): every trial runs to the end"


def parse_objectives(text: str) -> list[tuple[str, str]]:
    """[(metric, mode), ...] from "METRIC[:MODE],..."; a missing mode is the metric's usual one."""
    objectives: list[tuple[str, str]] = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            raise ConfigError(f"--objective {text!r} has an empty item; write METRIC:MODE,METRIC:MODE")
        metric, _, mode = item.rpartition(":") if item.endswith((":max", ":min")) else (item, "", "")
        mode = mode or default_mode(metric)
        if ":" in metric:
            raise ConfigError(f"--objective item {item!r}: the mode after ':' must be max or min")
        if metric not in METRIC_KEYS and metric not in COST_OBJECTIVES:
            raise ConfigError(f"--objective {metric!r} is not a metric every trial reports; use "
                              f"{', '.join(METRIC_KEYS[:4])}, ... or {', '.join(COST_OBJECTIVES)}")
        if metric in (m for m, _ in objectives):
            raise ConfigError(f"--objective names {metric} twice; give each metric once")
        objectives.append((metric, mode))
    return objectives


def check_objective_args(args: argparse.Namespace) -> None:
    """`args.objectives`: [] (one metric, --metric/--mode) or the objectives; with one objective it
    is --metric/--mode written another way."""
    args.objectives = []
    if args.objective is None:
        return
    if getattr(args, "given", set()) & {"metric", "mode"}:
        raise ConfigError("--objective replaces --metric and --mode; leave those out")
    objectives = parse_objectives(args.objective)
    args.metric, args.mode = objectives[0]
    if len(objectives) == 1:
        return
    if getattr(args, "warm_start", None):
        raise ConfigError("--warm-start seeds a study of one objective; a search for several objectives starts its own: "
                          "leave --warm-start out")
    if getattr(args, "confirm_top", None):
        raise ConfigError("--confirm-top confirms the one best configuration; a search for several objectives "
                          "ends with a front of them: leave --confirm-top out")
    for flag in ("grace_period", "reduction_factor"):
        if flag in getattr(args, "given", set()):
            raise ConfigError(f"--{flag.replace('_', '-')} sets ASHA, which does not apply to several objectives; "
                              f"leave it out")
    args.objectives = [list(o) for o in objectives]
