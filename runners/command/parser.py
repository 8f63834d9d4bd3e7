"""The argparse parser of `segtune tune` (`python runners/tune.py`); runners/command/request.py turns what it
parses into the typed request."""

from __future__ import annotations

import argparse
from pathlib import Path

from segtune.core.errors import ConfigError, OneLineErrorParser
from segtune.trainers.registry import BACKENDS, FRAMEWORKS

# Options only some adapters understand (they list them in `TrainerAdapter.options`).
ADAPTER_OPTIONS = ("iters_per_epoch",)
SAMPLERS = ("tpe", "random")
SCHEDULERS = ("asha", "none")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(
        prog="tune.py",
        description=(
            "Search training hyperparameters of an instance-segmentation model with Ray Tune: "
            "Optuna (TPE) proposes configurations, ASHA stops weak trials early, and every trial "
            "reports COCO segm/bbox AP after each epoch."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    what = parser.add_argument_group("what to train")
    what.add_argument(
        "--framework",
        required=True,
        type=_framework_list,
        metavar="|".join(FRAMEWORKS + ("F1,F2", "all")),
        help="framework adapter; several (comma-separated, or 'all': every one whose library is "
        "installed) make one search whose trials choose the framework and its model",
    )
    backends = "; ".join(f"{fw}: auto, {', '.join(b)}" for fw, b in BACKENDS.items() if b)
    what.add_argument(
        "--backend",
        default="auto",
        help=f"library behind a framework that has several ({backends}; auto: the first of them that is installed)",
    )
    what.add_argument(
        "--model",
        nargs="+",
        default=None,
        metavar="MODEL",
        help="the framework's model: a model config, architecture or weights file as that framework "
        "names them (see the README; default: the adapter's, smaller without a GPU); with several "
        "frameworks, the model choices of each: FRAMEWORK=MODEL[,MODEL...] ...",
    )
    what.add_argument(
        "--weights",
        nargs="+",
        default=None,
        metavar="WEIGHTS",
        help="weights to start from: a local file or a model-zoo name (needs a download); 'none': "
        "train from scratch; default: the framework's COCO-pretrained weights of the model, from "
        "its own cache or downloaded once before any trial (from scratch, saying why, when they "
        "cannot be had; see docs/PRETRAINED.md); with several frameworks: FRAMEWORK=WEIGHTS ...",
    )
    what.add_argument(
        "--space",
        type=Path,
        nargs="+",
        default=None,
        metavar="YAML",
        help="search space YAML (default search_spaces/<framework>[_finetune][_cpu].yaml: _finetune "
        "when starting from pretrained weights, _cpu when there is no GPU); with several frameworks, "
        "one file for each framework whose default it replaces (the file names its framework)",
    )
    what.add_argument(
        "--config",
        type=Path,
        default=None,
        help="train this one configuration (a params YAML, e.g. from export_best.py) instead of searching",
    )

    data = parser.add_argument_group("data (validated and converted once, before any trial)")
    data.add_argument(
        "--data",
        type=Path,
        default=None,
        help="COCO dataset dir (images/<split>/, annotations/instances_<split>.json) or a dataset "
        "file in a framework's own format (an Ultralytics YAML); default: the built-in demo set",
    )
    data.add_argument("--train-json", type=Path, default=None, help="COCO train annotations (instead of --data)")
    data.add_argument("--train-images", type=Path, default=None, help="train images dir (with --train-json)")
    data.add_argument("--val-json", type=Path, default=None, help="COCO val annotations (optional)")
    data.add_argument("--val-images", type=Path, default=None, help="val images dir (with --val-json)")
    data.add_argument(
        "--val-fraction",
        type=float,
        default=0.1,
        help="share of images held out for val when the data has no val split (seeded)",
    )
    data.add_argument(
        "--cache-dir",
        type=Path,
        default=Path("~/.cache/segtune"),
        help="where converted datasets and the demo set are cached (by content hash)",
    )

    search = parser.add_argument_group("search")
    search.add_argument(
        "--num-samples",
        type=int,
        default=None,
        help="number of trials (default 16 with GPUs, 24 fine-tuning; 8 on CPU)",
    )
    search.add_argument(
        "--max-epochs",
        type=int,
        default=None,
        help="epochs of a trial that is never stopped; ASHA's max_t (default 100 with GPUs; "
        "on CPU the adapter's own default; a third of that, 30 with GPUs, when fine-tuning)",
    )
    search.add_argument(
        "--grace-period",
        type=int,
        default=None,
        help="epochs every trial gets before ASHA may stop it (default max-epochs/10 with GPUs, "
        "max-epochs/3 on CPU, max-epochs/5 on CPU when fine-tuning; at least 1)",
    )
    search.add_argument(
        "--reduction-factor",
        type=float,
        default=3,
        help="ASHA keeps the best 1/reduction-factor of trials at each rung",
    )
    search.add_argument(
        "--sampler",
        choices=SAMPLERS,
        default="tpe",
        help="how configurations are proposed: Optuna's TPE, or uniformly at random (a baseline)",
    )
    search.add_argument(
        "--scheduler",
        choices=SCHEDULERS,
        default="asha",
        help="asha: stop weak trials early; none: every trial trains all --max-epochs",
    )
    search.add_argument(
        "--budget-epochs",
        type=int,
        default=None,
        help="end the search once its trials have trained this many epochs in all (running trials "
        "are stopped); --num-samples then defaults to what the budget pays for",
    )
    search.add_argument(
        "--metric",
        default="segm/AP",
        help="metric to optimise: segm/AP, segm/AP50, bbox/AP, ... or a framework-native one; a trial "
        "is scored by its best mean of it over 3 consecutive epochs (segtune/score)",
    )
    search.add_argument(
        "--mode",
        choices=("max", "min"),
        default=None,
        help="maximise or minimise --metric (default: min for losses, else max)",
    )
    search.add_argument(
        "--objective",
        default=None,
        metavar="METRIC:MODE,METRIC:MODE",
        help="several objectives at once, e.g. 'segm/AP:max,cost/latency_ms:min': Optuna's "
        "multi-objective TPE, without ASHA; trials ranked by Pareto rank (instead of "
        "--metric/--mode)",
    )
    search.add_argument(
        "--seed", type=int, default=0, help="seed of the sampler, the data split and every trial's training"
    )
    search.add_argument(
        "--time-budget",
        type=float,
        default=None,
        help="stop the search after this many seconds (running trials are ended); with --resume, "
        "the budget of the resumed run",
    )
    search.add_argument(
        "--max-failures", type=int, default=0, help="retries of a trial that crashed (from its last checkpoint)"
    )
    search.add_argument(
        "--study-storage",
        default=None,
        metavar="URL",
        help="RDB URL Optuna accepts for the study (e.g. postgresql://user:pw@host/db); "
        "default: SQLite <experiment>/optuna.db",
    )
    search.add_argument(
        "--warm-start",
        type=Path,
        nargs="+",
        default=None,
        metavar="EXPERIMENT",
        help="earlier experiments (<storage>/<name>, or a name in --storage) whose trials seed "
        "this search's study; their best configurations run first",
    )
    search.add_argument(
        "--start-from",
        type=Path,
        default=None,
        help="a known-good configuration (export_best.py's config.yaml or a params YAML): after the "
        "framework's defaults, the search's first trials; its searched keys are used",
    )
    search.add_argument(
        "--confirm-top",
        type=int,
        default=None,
        help="after the search, train the best K configurations again with new seeds, as trials of "
        "the same experiment, and rank them by their mean (default 2 on CPU, 3 with GPUs, at "
        "most num-samples/4; 0: off)",
    )
    search.add_argument(
        "--confirm-seeds",
        type=int,
        default=2,
        help="new seeds per confirmed configuration (the spread between them is the noise)",
    )
    search.add_argument(
        "--iters-per-epoch",
        type=int,
        default=None,
        help="iterations between evaluations, for adapters that train by iteration; "
        "default: one pass over the train set",
    )

    resources = parser.add_argument_group("resources")
    resources.add_argument(
        "--gpus-per-trial",
        type=float,
        default=None,
        help="GPUs per trial, fractions allowed (default 1 when GPUs exist, else 0)",
    )
    resources.add_argument(
        "--cpus-per-trial",
        type=float,
        default=None,
        help="CPUs per trial (default with GPUs: as many as every GPU slot of every node can get, "
        "so no GPU idles; 1 on CPU)",
    )
    resources.add_argument(
        "--workers", type=int, default=None, help="data-loader workers per trial (default: cpus-per-trial - 1)"
    )
    resources.add_argument(
        "--address", default=None, help="address of an existing Ray cluster (e.g. 10.0.0.5:6379 or 'auto')"
    )

    output = parser.add_argument_group("output")
    output.add_argument("--name", default=None, help="experiment name (default <framework>-<date>-<time>)")
    output.add_argument(
        "--storage",
        type=Path,
        default=Path("runs"),
        help="directory that holds experiments (shared storage on a cluster)",
    )
    output.add_argument(
        "--resume",
        action="store_true",
        help="continue the experiment --name in --storage where it stopped; a larger "
        "--num-samples grows it, --time-budget sets a new budget",
    )
    terminal = output.add_mutually_exclusive_group()
    terminal.add_argument(
        "--quiet", action="store_true", help="print only the essentials, failed trials and the closing summary"
    )
    terminal.add_argument(
        "--verbose",
        action="store_true",
        help="print a line per epoch and Ray Tune's own tables too (default: one live view; "
        "plain lines when the output is not a terminal)",
    )
    return parser


def _framework_list(text: str) -> str:
    """--framework as written, once its names are known ones (argparse turns the error into one line)."""
    from segtune.runners.plan.frameworks import framework_names

    try:
        framework_names(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def given_options(argv: list[str]) -> set[str]:
    """The options written on the command line (argparse destinations), defaults left out: a
    resumed search must tell `--seed 0` typed by the user from the default."""
    parser = build_parser()
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    return set(vars(parser.parse_args(argv)))
