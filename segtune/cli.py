"""The `segtune` command: one entry point, one subcommand per job.

    segtune tune     search hyperparameters (runners/tune.py)
    segtune rank     rank an experiment's trials (analysis/rank.py)
    segtune report   an HTML report of an experiment (analysis/report.py)
    segtune export   export the best configuration and model (analysis/export_best.py)
    segtune evaluate score COCO predictions with segtune's evaluator (analysis/evaluate.py)

Each subcommand takes exactly the options of its script (`segtune tune --help`); the scripts keep
working from a clone (`python runners/tune.py ...`). A subcommand's module is imported only when it
runs, so `segtune --help` starts in a fraction of a second.
"""

from __future__ import annotations

import importlib
import sys

__all__ = ["COMMANDS", "main"]

# subcommand -> (module with a `main(argv) -> int`, one line of help)
COMMANDS: dict[str, tuple[str, str]] = {
    "tune": ("segtune.runners.command", "search training hyperparameters (Ray Tune + Optuna TPE + ASHA)"),
    "rank": ("segtune.analysis.rank", "rank an experiment's trials; the best first"),
    "report": ("segtune.analysis.report", "write an HTML report of an experiment"),
    "export": ("segtune.analysis.export_best", "export the best configuration, model weights, ONNX and model card"),
    "evaluate": ("segtune.analysis.evaluate", "score a COCO predictions file with segtune's evaluator"),
}


def _usage() -> str:
    width = max(map(len, COMMANDS))
    rows = "\n".join(f"  {name:<{width}}  {text}" for name, (_, text) in COMMANDS.items())
    return (
        f"usage: segtune COMMAND [options]\n\nHyperparameter search for instance segmentation.\n\n"
        f"commands:\n{rows}\n\n'segtune COMMAND --help' lists a command's options."
    )


def main(argv: list[str] | None = None) -> int:
    """Run `segtune COMMAND ...`; returns the exit status (2 for a usage error)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(_usage())
        return 0 if args else 2
    if args[0] == "--version":
        from segtune import __version__

        print(f"segtune {__version__}")
        return 0
    command, rest = args[0], args[1:]
    if command not in COMMANDS:
        print(
            f"segtune: error: unknown command {command!r}; choose one of {', '.join(COMMANDS)} (segtune --help)",
            file=sys.stderr,
        )
        return 2
    module = importlib.import_module(COMMANDS[command][0])
    return module.main(rest, prog=f"segtune {command}")
