"""Planning: the request and the cluster's facts in, a plan out; no Ray calls, nothing written.

    experiment    the plan of a new search: the experiment record (`RunSettings`), space, first trials
    budget        epochs per trial, ASHA's grace period, trials an epoch budget pays for
    confirm       which configurations are trained again after the search, with which seeds
    describe      the plan in words: the lines printed before the first trial
    frameworks    the frameworks of a search and their backends, models, first points, adapter options
    objectives    the metric and mode, or several objectives (`--objective`)
    resources     per-trial CPUs/GPUs and trials at once, planned node by node
    resume        what `--resume` may change in a recorded experiment
    sampler       TPE's random start and settings, from the budget
    spaces        a framework's search space: `--space`, `--config` or its default file, keys checked
    start_points  the first trials: the framework's defaults, then a known-good configuration
"""
__all__ = ["budget", "confirm", "describe", "experiment", "frameworks", "objectives", "resources", "resume",
           "sampler", "spaces", "start_points"]
