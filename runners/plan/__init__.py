"""Planning: the request and the cluster's facts in, a plan out; no Ray calls, nothing written.

    budget        epochs per trial, ASHA's grace period, trials an epoch budget pays for
    confirm       which configurations are trained again after the search, with which seeds
    frameworks    the frameworks of a search (one, several, or all installed) and their backends, models, spaces
    objectives    several objectives (`--objective`): parsed and checked
    resources     per-trial CPUs/GPUs and trials at once, planned node by node
    resume        what `--resume` may change in a recorded experiment
    sampler       TPE's random start and settings, from the budget
    start_points  the first trials: the framework's defaults, then a known-good configuration
"""
__all__ = ["budget", "confirm", "frameworks", "objectives", "resources", "resume", "sampler", "start_points"]
