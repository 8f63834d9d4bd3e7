"""Planning: the request and the cluster's facts in, a plan out; no Ray calls.

experiment      the plan of a new search: the experiment record (`RunSettings`), space, first trials,
                and the plan in words (the lines printed before the first trial)
budget          epochs per trial, ASHA's grace period, trials an epoch budget pays for, TPE's random start
confirm         which configurations are trained again after the search, with which seeds
frameworks      each framework's backend, models, search space (`--space`, `--config`, or its default
                file) and first point; adapter options
starting_point  where trials start: the framework's COCO-pretrained weights, or from scratch (and why)
first_trials    the first trials: the framework's defaults, then a known-good configuration
objectives      the metric and mode, or several objectives (`--objective`)
resources       per-trial CPUs/GPUs and trials at once, planned node by node
resume          what `--resume` may change in a recorded experiment
"""

__all__ = [
    "budget",
    "confirm",
    "experiment",
    "first_trials",
    "frameworks",
    "objectives",
    "resources",
    "resume",
    "starting_point",
]
