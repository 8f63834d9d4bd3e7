"""One trial of a search, in the Ray worker process that runs it.

- loop.py     `run_trial`, the Ray Tune trainable: the framework's adapter trains; after each epoch
              a small loop calls the hooks in a fixed order and makes the epoch's one `tune.report`
- hooks.py    one hook per duty (evaluation, context, divergence, cost, score, start-up log,
              checkpoint); `TrialHook` is the extension point, `EXTRA_HOOKS_ENV` the seam by which
              tests add hooks (fault injection: tests/fault_hooks.py)
- cost.py     what a trial's model costs (`cost/*`): training time and memory, inference latency
- startup.py  where a trial's start-up time goes; what a reused worker process keeps between trials
"""

from segtune.runners.trial.cost import TrialCost, device_description, timing_image
from segtune.runners.trial.hooks import (
    EXTRA_HOOKS_ENV,
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
from segtune.runners.trial.loop import TrialLoop, run_trial, trial_device, trial_hooks
from segtune.runners.trial.startup import StartupLog, release_previous_trial, shared_evaluator

__all__ = [
    "EXTRA_HOOKS_ENV",
    "CheckpointHook",
    "ContextHook",
    "CostHook",
    "DivergenceHook",
    "EvaluationHook",
    "ScoreHook",
    "StartupHook",
    "StartupLog",
    "StopTraining",
    "TrialCost",
    "TrialHook",
    "TrialLoop",
    "TrialStart",
    "device_description",
    "extra_hooks",
    "release_previous_trial",
    "run_trial",
    "shared_evaluator",
    "timing_image",
    "trial_device",
    "trial_hooks",
]
