"""One trial: a Ray Tune function trainable — the framework's adapter trains, a small loop drives hooks.

After each epoch the adapter calls back here, and the loop calls the hooks (hooks.py), each phase
over every hook in the order of `trial_hooks`, then makes the epoch's one `tune.report`:

    epoch_trained   CostHook stops the epoch clock; StartupHook marks the first epoch
    after_epoch     one result row, filled in this order:
                    EvaluationHook  segtune's COCO metrics, the framework's own numbers, epoch, eval time
                    ContextHook     trial time, node, device, GPU, AMP
                    DivergenceHook  diverged = 0
                    CostHook        cost/* (inference timed after epochs 1, 2, 4, 8, ...)
                    ScoreHook       the search metric (its worst value if missing), window and score
                    StartupHook     startup.json, before the first report
    save            a checkpoint staged outside the trial dir: the adapter's files (CheckpointHook),
                    the cost and score state
    tune.report     the row, with the checkpoint
    after_report    CostHook restarts the epoch clock: the framework trains on

Before training each hook takes back its state from the restored checkpoint (`before_train`). When
training diverges, the trial's last row is DivergenceHook's (`after_diverged`: the reason, a worst-case
score). A hook raising StopTraining ends training as the framework's own early stopping would.
Hooks that tests add (`hooks.EXTRA_HOOKS_ENV`: fault injection) come last.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from segtune.cocodata.evaluator import CocoEvaluator
from segtune.core.choice import for_trial
from segtune.core.record import RunSettings, split_marks
from segtune.runners.trial.cost import TrialCost
from segtune.runners.trial.hooks import (
    CheckpointHook,
    ContextHook,
    CostHook,
    DivergenceHook,
    EvaluationHook,
    ScoreHook,
    StartupHook,
    StopTraining,
    TrialHook,
    TrialStart,
    extra_hooks,
)
from segtune.runners.trial.startup import StartupLog, shared_evaluator
from segtune.search_spaces.space import thaw
from segtune.trainers.base import TrainerAdapter, TrainingDiverged, TrialContext
from segtune.trainers.registry import get_adapter


def trial_device(gpus_per_trial: float) -> str:
    """Ray narrowed CUDA_VISIBLE_DEVICES to this trial's GPUs; a CPU trial must say 'cpu' explicitly
    (recent Ray lets a 0-GPU trial see every GPU)."""
    import torch

    return "cuda:0" if gpus_per_trial > 0 and torch.cuda.is_available() else "cpu"


def run_trial(config: dict[str, Any], settings: RunSettings) -> None:
    """The Ray Tune trainable. `config` holds the hyperparameters (sampled and fixed); for a
    confirmation trial also segtune's marks (`core.record.split_marks`), which the adapter never sees;
    in a search over several frameworks also the framework and model it chose (core/choice.py)."""
    # In a reused process (reuse_actors) this first frees what the last trial left in reference
    # cycles (its model, optimizer, data loaders), before this trial allocates its own.
    startup = StartupLog.begin()
    import ray.tune  # noqa: F401 -- the trial's heavy imports come in before imports_done freezes them
    import torch

    startup.imports_done()
    torch.set_num_threads(max(1, int(settings.resources.cpus_per_trial)))
    trial_dir = _trial_output_dir(settings)
    hyperparameters, _ = split_marks(config)
    single, params = for_trial(settings, hyperparameters)  # the chosen framework's settings and own params
    context = TrialContext.for_experiment(single, trial_dir, trial_device(settings.resources.gpus_per_trial))
    adapter = get_adapter(single.sole_framework.name, single.sole_framework.backend)(
        {key: thaw(value) for key, value in params.items()}, context
    )
    startup.mark("adapter_built")
    evaluator = shared_evaluator(settings.data.val_json, settings.data.content_hash)
    startup.mark("evaluator_ready")
    hooks = trial_hooks(adapter, context, evaluator, settings, startup)
    TrialLoop(adapter, hooks).run(trial_dir, Path(settings.experiment_dir or trial_dir.parent))


def trial_hooks(
    adapter: TrainerAdapter, context: TrialContext, evaluator: CocoEvaluator, settings: RunSettings, startup: StartupLog
) -> list[TrialHook]:
    """The trial's hooks, in the order the loop calls them (which is the order of the row's entries)."""
    return [
        EvaluationHook(adapter, evaluator),
        ContextHook(adapter, context),  # the trial's time runs from here
        DivergenceHook(settings.objective.metric, settings.objective.mode),
        CostHook(TrialCost(adapter, context.device)),  # the first epoch's clock starts here
        ScoreHook(settings.objective.metric, settings.objective.mode),
        StartupHook(startup, context.output_dir, adapter),
        CheckpointHook(adapter),
        *extra_hooks(),  # what tests add (hooks.EXTRA_HOOKS_ENV); none otherwise
    ]


class TrialLoop:
    """Trains with the adapter and, after each epoch, calls the hooks' phases and reports once."""

    def __init__(self, adapter: TrainerAdapter, hooks: list[TrialHook]) -> None:
        self.adapter = adapter
        self.hooks = hooks

    def run(self, trial_dir: Path, experiment_dir: Path) -> None:
        from ray import tune

        try:
            with _restored_checkpoint() as resume_from:
                start = TrialStart(trial_dir, experiment_dir, resume_from)
                for hook in self.hooks:
                    hook.before_train(start)
                self.adapter.train(self.on_epoch_end, resume_from)
        except StopTraining:
            return
        except TrainingDiverged as exc:
            # Divergence is a normal outcome of a search: the trial ends with a last row that says why.
            row: dict[str, Any] = {}
            for hook in self.hooks:
                hook.after_diverged(exc, row)
            tune.report(row)

    def on_epoch_end(self, epoch: int, native: Mapping[str, float]) -> None:
        """The adapter's callback after each epoch (trainers/base.py: EpochEnd)."""
        from ray import tune

        for hook in self.hooks:
            hook.epoch_trained(epoch)
        row: dict[str, Any] = {}
        for hook in self.hooks:
            hook.after_epoch(epoch, native, row)
        # Staged outside the trial dir: Ray syncs that dir and must not see a half-made checkpoint.
        with tempfile.TemporaryDirectory(prefix="segtune-ckpt-") as tmp:
            for hook in self.hooks:
                hook.save(Path(tmp))
            tune.report(row, checkpoint=tune.Checkpoint.from_directory(tmp))
        for hook in self.hooks:
            hook.after_report(epoch)


def _trial_output_dir(settings: RunSettings) -> Path:
    """The trial's folder in the experiment directory itself. Ray's own trial dir is a local
    staging copy that Ray re-uploads with every experiment snapshot: framework output (weights,
    logs) written there would be copied again and again, and lost on other cluster nodes."""
    from ray import tune

    context = tune.get_context()
    if not settings.experiment_dir:
        return Path(context.get_trial_dir()).resolve()
    trial_dir = Path(settings.experiment_dir) / f"trial_{context.get_trial_id()}"
    trial_dir.mkdir(parents=True, exist_ok=True)
    return trial_dir


@contextlib.contextmanager
def _restored_checkpoint() -> Iterator[Path | None]:
    """The latest checkpoint of this trial (after a resume or a retry), in a private temp dir that
    Ray does not sync, removed when the trial ends."""
    from ray import tune

    checkpoint = tune.get_checkpoint()
    if checkpoint is None:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="segtune-restore-") as tmp:
        checkpoint.to_directory(tmp)
        yield Path(tmp)
