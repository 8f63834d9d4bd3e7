"""Export the best trial (or --trial ID): `python analysis/export_best.py EXP_DIR --out DIR`.

DIR receives:
  config.yaml         segtune's own format; `python runners/tune.py --framework F --config DIR/config.yaml`
                      retrains it without a search (framework, backend, model, weights + every param)
  native_config.yaml  the same run in the framework's own terms (from the adapter's native_config)
  weights/            the weights file of the trial's best kept checkpoint (adapter.weights_in_checkpoint)
  best.pt, best.onnx  what the adapter's inference_files makes (YOLO: a stripped copy and its ONNX export)
  MODEL_CARD.md       metrics at the best epoch, costs (latency, memory, parameters, training time),
                      data, seed, versions, the command to retrain
DIR must be new or empty (--force writes into a non-empty one; files of other names are left alone).

--max-latency-ms X exports the best trial whose recorded cost/latency_ms is at most X; --pareto
exports every trial on the Pareto front of the ranking metric against cost/latency_ms, each into
DIR/trial_<id>/ with its own model card.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib.metadata
import shlex
import shutil
import sys
from pathlib import Path
from typing import Any

import yaml

from segtune.analysis.confirmed import confirmed_configs, describe
from segtune.analysis.costs import model_card_costs, pareto_trials, pick_within_latency, trial_latency
from segtune.analysis.pareto import LATENCY
from segtune.analysis.ranking import best_trial, format_value
from segtune.analysis.trials import Experiment, TrialSummary, load_experiment
from segtune.cocodata.evaluator import METRIC_KEYS
from segtune.core.choice import for_trial, own_params
from segtune.core.errors import ConfigError, ExperimentError, not_writable, run_cli
from segtune.core.score import SCORE_WINDOW
from segtune.search_spaces.space import thaw
from segtune.trainers.base import ExportFailed, TrialContext
from segtune.trainers.registry import get_adapter

PROG = "export_best.py"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python analysis/export_best.py",
        description="Export the best trial of an experiment: a re-trainable config, the framework's native "
        "config, the weights (and ONNX for YOLO) and a model card.",
    )
    parser.add_argument("experiment", type=Path, help="experiment directory (<storage>/<name>)")
    parser.add_argument("--out", type=Path, required=True, help="output directory (new or empty)")
    choice = parser.add_mutually_exclusive_group()
    choice.add_argument("--trial", default=None, help="export this trial id instead of the best one")
    choice.add_argument(
        "--max-latency-ms",
        type=float,
        default=None,
        metavar="X",
        help="export the best trial whose measured latency (cost/latency_ms) is at most X",
    )
    choice.add_argument(
        "--pareto",
        action="store_true",
        help="export every trial on the Pareto front of the metric against cost/latency_ms, each into OUT/trial_<id>/",
    )
    parser.add_argument("--metric", default=None, help="choose the best trial by this metric (default: the search's)")
    parser.add_argument("--mode", choices=("max", "min"), default=None, help="max or min (default: the search's)")
    parser.add_argument("--no-onnx", action="store_true", help="skip the ONNX export (YOLO)")
    parser.add_argument("--force", action="store_true", help="write into a non-empty --out")
    return parser


def pick_trial(exp: Experiment, trial_id: str | None) -> TrialSummary:
    if trial_id is None:
        best = best_trial(exp.trials)  # the trial the summary, rank.py and report.py name
        if best is None or best.checkpoint is None:
            waiting = any(t.status in ("running", "pending") for t in exp.trials)
            states = ", ".join(sorted({t.status for t in exp.trials})) or "no trials"
            raise ExperimentError(
                f"no trial of {exp.name} has a checkpoint"
                + (" yet; wait for the first epoch to finish" if waiting else f" (trials: {states}); nothing to export")
            )
        return best
    wanted = trial_id.removeprefix("trial_")
    matches = [t for t in exp.trials if t.trial_id == wanted] or [
        t for t in exp.trials if t.trial_id.startswith(wanted)
    ]
    if len(matches) != 1:
        known = ", ".join(t.trial_id for t in exp.trials)
        what = "matches several trials" if matches else "is not a trial"
        raise ExperimentError(f"--trial {trial_id!r} {what} of {exp.name}; choose one of: {known}")
    if matches[0].checkpoint is None:
        raise ExperimentError(
            f"trial {matches[0].trial_id} has no checkpoint ({matches[0].detail}); pick another --trial"
        )
    return matches[0]


def check_out(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ExperimentError(f"--out {out} is a file; choose a directory")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ExperimentError(f"--out {out} exists and is not empty; choose a new directory or pass --force")


def retrain_command(exp: Experiment, config_path: Path) -> str:
    """The search's settings with the exported config in place of the search space."""
    s, d, fw = exp.settings, exp.settings.data, exp.settings.sole_framework
    args = ["segtune", "tune", "--framework", fw.name]
    if fw.backend:
        args += ["--backend", fw.backend]
    # The same starting point: its weights, or `--weights none` for a from-scratch search (the default would fine-tune).
    args += ["--config", str(config_path), "--model", fw.model, "--weights", fw.weights or "none"]
    # The prepared (validated, split) copies of the data: the same train/val images as the search.
    args += [
        "--train-json",
        str(d.train_json),
        "--train-images",
        str(d.train_images),
        "--val-json",
        str(d.val_json),
        "--val-images",
        str(d.val_images),
        "--max-epochs",
        str(s.budget.max_epochs),
        "--metric",
        s.objective.metric,
        "--mode",
        s.objective.mode,
        "--seed",
        str(s.seed),
        "--name",
        f"{exp.name}-retrain",
    ]
    return shlex.join(args)


def write_config(exp: Experiment, trial: TrialSummary, out: Path) -> Path:
    fw = exp.settings.sole_framework
    params = {k: thaw(v) for k, v in sorted(trial.params.items())}
    data = {"framework": fw.name, "backend": fw.backend, "model": fw.model, "weights": fw.weights, "params": params}
    path = out / "config.yaml"
    header = (
        f"# segtune config: trial {trial.trial_id} of experiment {exp.name} (rank {trial.rank} by "
        f"{exp.metric}, {exp.mode}).\n# Retrain without a search (on the search's data):\n"
        f"#   {retrain_command(exp, path)}\n# 'weights' is what training started from "
        f"(null: from scratch); the trained weights are in weights/.\n"
    )
    path.write_text(header + yaml.safe_dump(data, sort_keys=False))
    return path


def write_native_config(adapter_cls, exp: Experiment, trial: TrialSummary, out: Path) -> Path:
    s = exp.settings
    context = TrialContext.for_experiment(s, out, "cuda:0" if s.resources.gpus_per_trial > 0 else "cpu")
    native = adapter_cls.native_config({k: thaw(v) for k, v in trial.params.items()}, context)
    path = out / "native_config.yaml"
    path.write_text(
        f"# {adapter_cls.display_name()} configuration of trial {trial.trial_id}, in the framework's own "
        f"terms (written by the adapter's native_config)\n" + yaml.safe_dump(_plain(native), sort_keys=False)
    )
    return path


def _plain(value: Any) -> Any:
    """YAML-safe: paths and other objects as text, tuples as lists."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(thaw(value))


def copy_weights(adapter_cls, trial: TrialSummary, out: Path) -> Path:
    """The adapter names the weights file of its checkpoints; without the adapter, the whole checkpoint."""
    target_dir = out / "weights"
    target_dir.mkdir(exist_ok=True)
    if adapter_cls is None:
        shutil.copytree(trial.checkpoint, target_dir, dirs_exist_ok=True)
        return target_dir
    source = adapter_cls.weights_in_checkpoint(trial.checkpoint)
    if not source.is_file():
        raise ExperimentError(f"checkpoint {trial.checkpoint} has no {source.name}; pick another --trial")
    target = target_dir / source.name
    shutil.copy2(source, target)
    return target


def starting_weights(model: str, weights: str | None) -> str:
    """What training started from, for the model card: the weights, the model file's own weights (a
    YOLO .pt given as the model), or scratch (docs/PRETRAINED.md)."""
    if weights:
        return f"`{weights}`"
    if model.endswith((".pt", ".pth", ".pkl")):
        return f"the weights in `{model}`"
    return "scratch"


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_model_card(
    exp: Experiment,
    trial: TrialSummary,
    out: Path,
    files: list[Path],
    notes: list[str],
    framework_packages: tuple[str, ...],
) -> Path:
    s, d, fw = exp.settings, exp.settings.data, exp.settings.sole_framework
    packages = ["segtune", "torch", *framework_packages, "ray", "optuna"]
    metric_rows = "\n".join(
        f"| {k} | {trial.best_metrics[k]:.2f} |"
        if trial.best_metrics.get(k, -1) >= 0
        else f"| {k} | - (no ground truth of that size) |"
        for k in METRIC_KEYS
        if k in trial.best_metrics
    )
    params = "\n".join(
        f"| {k} | {thaw(v)!r} | {'searched' if k in exp.searched else 'fixed'} |"
        for k, v in sorted(trial.params.items())
    )
    file_rows = "\n".join(
        f"| {f.relative_to(out)} | {f.stat().st_size / 1e6:.1f} MB | `{_sha256(f)[:16]}` |"
        for f in files
        if f.is_file()
    )
    backend = f" ({fw.backend})" if fw.backend else ""
    framework_line = f"{fw.name}{backend}, model `{fw.model}`, started from {starting_weights(fw.model, fw.weights)}."
    rank_line = (
        f"- rank {trial.rank} of {len(exp.trials)} trials by the score of `{exp.metric}` ({exp.mode}; the best "
        f"mean over {SCORE_WINDOW} consecutive epochs): {format_value(trial.best_value)}, window ending at epoch "
        f"{trial.best_epoch}"
    )
    kept = "" if _checkpoint_epoch(trial) == trial.best_epoch else " (the best epoch was not kept)"
    weights_line = f"- the weights are from epoch {_checkpoint_epoch(trial)}{kept}."
    text = f"""# Model card: {exp.name} / trial {trial.trial_id}

{framework_line}

{rank_line}
{confirmation_note(exp, trial)}- {trial.detail}; {trial.epochs} epochs trained
{weights_line}
- source: checkpoint `{trial.checkpoint.name}` of `{trial.path}`

## COCO metrics at the best epoch (segtune's evaluator, percent)

| metric | value |
|---|---|
{metric_rows}

## Cost

{model_card_costs(trial)}

## Data

- dataset: `{d.name}`, content hash `{d.content_hash}`
- {d.num_train_images} train / {d.num_val_images} val images, classes: {", ".join(d.category_names)}

## Training

- seed: {trial.params.get("seed", s.seed)} (search seed {s.seed}), up to {s.budget.max_epochs} epochs
- parameters:

| parameter | value | |
|---|---|---|
{params}

## Retrain

```
{retrain_command(exp, out / "config.yaml")}
```

## Files

| file | size | sha256 |
|---|---|---|
{file_rows}

## Versions

{chr(10).join(f"- {p}: {_version(p)}" for p in packages)}
- python: {sys.version.split()[0]}
""" + ("\n## Notes\n\n" + "\n".join(f"- {n}" for n in notes) + "\n" if notes else "")
    path = out / "MODEL_CARD.md"
    path.write_text(text)
    return path


def single_framework_view(exp: Experiment, trial: TrialSummary) -> tuple[Experiment, TrialSummary, str]:
    """A trial of a search over several frameworks as a trial of a search of its framework alone
    (its backend, model, weights and own parameters, unprefixed: core/choice.py), so that it exports
    with its own adapter's native config and inference files; and a note saying so."""
    if not exp.settings.is_multi:
        return exp, trial, ""
    settings, params = for_trial(exp.settings, trial.params)
    chosen = settings.sole_framework
    view = dataclasses.replace(
        exp,
        settings=settings,
        searched=sorted(own_params(chosen.name, dict.fromkeys(exp.searched))),
        fixed=own_params(chosen.name, exp.fixed),
        distributions={},
    )
    note = (
        f"chosen among the frameworks {', '.join(exp.settings.framework_names)} by one search; this trial "
        f"trained {chosen.name} ({chosen.model})"
    )
    return view, dataclasses.replace(trial, params=params), note


def export(exp: Experiment, trial: TrialSummary, out: Path, onnx: bool = True, why: str = "") -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    exp, trial, chosen = single_framework_view(exp, trial)
    fw = exp.settings.sole_framework
    notes: list[str] = [n for n in (why, chosen) if n]
    try:
        adapter_cls = get_adapter(fw.name, fw.backend or None)
    except ConfigError as exc:  # the framework is not installed here: still export what needs no adapter
        adapter_cls = None
        notes.append(f"no native config: {exc}")
    files = [write_config(exp, trial, out)]
    if adapter_cls is not None:
        try:
            files.append(write_native_config(adapter_cls, exp, trial, out))
        except (ConfigError, OSError, ValueError) as exc:
            notes.append(f"native config not written: {exc}")
    weights = copy_weights(adapter_cls, trial, out)
    files.append(weights)
    failure = None
    if adapter_cls is not None:
        params = {k: thaw(v) for k, v in trial.params.items()}
        try:
            files += adapter_cls.inference_files(weights, out, params, onnx)
        except ExportFailed as exc:  # keep what was made before the failure, say what was not
            failure = exc
            files += sorted(p for p in out.iterdir() if p.is_file() and p not in files)
            notes.append(str(exc))
    files.append(write_model_card(exp, trial, out, files, notes, adapter_cls.packages if adapter_cls else ()))
    if failure is not None:
        raise failure
    return files


def confirmation_note(exp: Experiment, trial: TrialSummary) -> str:
    """A model-card line for a confirmation trial: which configuration, its mean over the new seeds."""
    if not trial.confirm_of:
        return ""
    group = next((g for g in confirmed_configs(exp.trials, exp.mode) if g.original_id == trial.confirm_of), None)
    seeds = ", ".join(f"trial_{t.trial_id} {t.best_value:.2f}" for t in group.counted) if group else ""
    return (
        (
            f"- confirmation trial: seed #{trial.confirm_seed} of the configuration of search trial "
            f"trial_{trial.confirm_of}, trained again with new seeds; confirmed score {describe(group)} "
            f"({seeds}). These weights are this seed's: the best of them.\n"
        )
        if group
        else ""
    )


def _checkpoint_epoch(trial: TrialSummary) -> int | None:
    for row in trial.history:
        if row.get("checkpoint_dir_name") == trial.checkpoint.name:
            return int(row.get("epoch") or row["training_iteration"])
    return None


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """The command (`prog`: its name in messages, e.g. 'segtune rank'); returns the exit status."""
    parser = build_parser()
    if prog:
        parser.prog = prog
    args = parser.parse_args(argv)
    return run_cli(prog or PROG, lambda: _export(args))


def _export(args: argparse.Namespace) -> int:
    out = args.out.expanduser().resolve()
    check_out(out, args.force)
    exp = load_experiment(args.experiment, args.metric, args.mode)
    if out == exp.path or exp.path in out.parents and out.parent != exp.path:
        raise ExperimentError(f"--out {out} is inside a trial of the experiment; choose a directory outside it")
    if args.pareto:
        return _export_front(exp, out, onnx=not args.no_onnx)
    why = ""
    if args.max_latency_ms is not None:
        trial = pick_within_latency(exp, args.max_latency_ms)
        why = f"chosen as the best trial with {LATENCY} <= {args.max_latency_ms:g} (export_best.py --max-latency-ms)"
    else:
        trial = pick_trial(exp, args.trial)
    try:
        files = export(exp, trial, out, onnx=not args.no_onnx, why=why)
    except ExportFailed as exc:
        print(f"{PROG}: {exc}; everything else is in {out}", file=sys.stderr)
        return 1
    except OSError as exc:
        raise not_writable(out, exc) from None
    latency = f", {trial_latency(trial):.2f} ms per image" if trial_latency(trial) is not None else ""
    seed = (
        f", seed #{trial.confirm_seed} of trial_{trial.confirm_of}'s confirmed configuration"
        if trial.confirm_of
        else ""
    )
    chosen = f"{trial.framework}, " if exp.settings.is_multi else ""
    print(
        f"exported trial {trial.trial_id} ({chosen}rank {trial.rank}{seed}, {exp.metric} score "
        f"{format_value(trial.best_value)}, window ending at epoch {trial.best_epoch}{latency}) to {out}:"
    )
    for f in files:
        print(f"  {f.relative_to(out) if f.is_relative_to(out) else f}")
    return 0


def _export_front(exp: Experiment, out: Path, onnx: bool) -> int:
    """Each trial on the accuracy-latency front into out/trial_<id>/, fastest first."""
    front = sorted(pareto_trials(exp), key=lambda t: trial_latency(t) or 0.0)
    if not front:
        raise ExperimentError(f"no trial of {exp.name} with a checkpoint is on the Pareto front; nothing to export")
    why = f"on the Pareto front of {exp.metric} ({exp.mode}) against {LATENCY} (export_best.py --pareto)"
    failed = 0
    print(
        f"{len(front)} trials on the Pareto front of {exp.metric} ({exp.mode}) against {LATENCY} (min), "
        f"exported to {out}:"
    )
    for trial in front:
        target = out / f"trial_{trial.trial_id}"
        try:
            export(exp, trial, target, onnx=onnx, why=why)
        except ExportFailed as exc:
            failed += 1
            print(f"{PROG}: trial {trial.trial_id}: {exc}; everything else is in {target}", file=sys.stderr)
        except OSError as exc:
            raise not_writable(target, exc) from None
        print(
            f"  {target.name}/  rank {trial.rank}, {exp.metric} {format_value(trial.best_value, exp.metric)}, "
            f"{trial_latency(trial):.2f} ms per image"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
