"""The search, in layers; dependencies run one way, top to bottom:

    command/   the command line: parsed and checked once (`segtune tune`, runners/tune.py)
    launch.py  the order of work, written down once: check -> plan -> cluster -> data -> search -> summary
    plan/      request + cluster facts -> a plan (budget, resources, start points, sampler, confirmation); no Ray
    search/    Ray Tune and Optuna glue: the Tuner, the searcher on the persistent study, schedulers, stoppers
    trial/     one trial: a loop that trains through the adapter and drives small single-duty hooks
    cluster/   Ray itself: a local instance (and its reaper) or an existing cluster
    view/      what the terminal shows: the live view and the closing summary
"""
