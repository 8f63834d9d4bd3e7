"""`--objective "segm/AP:max,cost/latency_ms:min"`: search for a trade-off instead of one metric.

With several objectives Ray's OptunaSearch hands Optuna a list of values per trial (Optuna's TPE
is multi-objective: MOTPE) and no intermediate values: ASHA, which compares trials on one number
at each rung, does not apply, and the search runs every trial to its end (Ray's FIFO scheduler,
`--time-budget` and the framework's own early stopping still end trials). The analysis ranks
trials by Pareto rank over the objectives, then by the first (analysis/pareto.py).
"""

from __future__ import annotations

from segtune.cocodata.evaluator import METRIC_KEYS
from segtune.core.errors import ConfigError
from segtune.core.record import default_mode
from segtune.trainers.base import TrainerAdapter

# What a trial reports once per epoch that can be an objective besides the COCO metrics
# (runners/trial/cost.py); `cost/latency_ms` is timed after epochs 1, 2, 4, 8, ... and repeated between.
COST_OBJECTIVES = (
    "cost/latency_ms",
    "cost/fps",
    "cost/params_m",
    "cost/train_mem_mb",
    "cost/infer_mem_mb",
    "cost/epoch_time_s",
    "cost/train_time_s",
)
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
            raise ConfigError(
                f"--objective {metric!r} is not a metric every trial reports; use "
                f"{', '.join(METRIC_KEYS[:4])}, ... or {', '.join(COST_OBJECTIVES)}"
            )
        if metric in (m for m, _ in objectives):
            raise ConfigError(f"--objective names {metric} twice; give each metric once")
        objectives.append((metric, mode))
    return objectives


def chosen_objectives(
    objective: str | None,
    metric: str,
    mode: str | None,
    given: frozenset[str],
    *,
    warm_start: bool,
    confirm_top: int | None,
) -> tuple[str, str | None, tuple[tuple[str, str], ...]]:
    """(metric, mode, objectives): --metric/--mode and no objectives, or the --objective ones, the
    first also as metric/mode; with one objective it is --metric/--mode written another way.

    Raises:
        ConfigError: --objective with --metric/--mode, or several objectives with an option of one
            (--warm-start, --confirm-top, ASHA's --grace-period/--reduction-factor).
    """
    if objective is None:
        return metric, mode, ()
    if given & {"metric", "mode"}:
        raise ConfigError("--objective replaces --metric and --mode; leave those out")
    objectives = parse_objectives(objective)
    metric, mode = objectives[0]
    if len(objectives) == 1:
        return metric, mode, ()
    if warm_start:
        raise ConfigError(
            "--warm-start seeds a study of one objective; a search for several objectives starts "
            "its own: leave --warm-start out"
        )
    if confirm_top:
        raise ConfigError(
            "--confirm-top confirms the one best configuration; a search for several objectives "
            "ends with a front of them: leave --confirm-top out"
        )
    for flag in ("grace_period", "reduction_factor"):
        if flag in given:
            raise ConfigError(
                f"--{flag.replace('_', '-')} sets ASHA, which does not apply to several objectives; leave it out"
            )
    return metric, mode, tuple(objectives)


def check_metric(
    metric: str, objectives: tuple[tuple[str, str], ...], adapters: dict[str, type[TrainerAdapter]]
) -> None:
    """The metric is one every trial reports: one of segtune's COCO metrics, or a native metric of the
    one framework searched (several frameworks compare on segtune's); a cost objective needs neither."""
    if len(adapters) > 1:
        if metric not in METRIC_KEYS and not objectives:
            raise ConfigError(
                f"--metric {metric!r}: a search over several frameworks compares them on segtune's "
                f"COCO metrics ({', '.join(METRIC_KEYS[:4])}, ...); a native metric is one "
                f"framework's"
            )
        return
    if objectives and metric in COST_OBJECTIVES:
        return
    (adapter,) = adapters.values()
    native = adapter.native_metric_names()
    if metric in METRIC_KEYS or metric in native or (not native and metric.startswith(adapter.native_prefix)):
        return
    examples = ", ".join(sorted(native)[:6]) if native else f"names starting with {adapter.native_prefix!r}"
    raise ConfigError(
        f"--metric {metric!r} is never reported by {adapter.display_name()}; use one of "
        f"{', '.join(METRIC_KEYS)} or a native metric ({examples}, ...)"
    )
