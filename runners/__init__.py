"""The search, in layers; each imports only the layers below it (tests/test_packaging.py checks it):

    command/    the command line: `segtune tune ARGS` parsed and checked once (`parse_request`)
    launch.py   the order of work, written down once: check -> data -> cluster -> plan -> search -> summary
    search/     Ray Tune and Optuna glue: the Tuner, the searcher on the persistent study, schedulers, stoppers
    plan/       the request + the cluster's facts -> a plan (budget, resources, start points, sampler,
                confirmation, the experiment record); no Ray calls
    trial/      one trial: a loop that trains through the adapter and drives small single-duty hooks
    view/       what the terminal shows: the live view and the closing summary
    cluster/    Ray itself: a local instance (and its reaper) or an existing cluster
    request.py  the frozen, typed request that the command line hands down (`TuneRequest`)

`runners/tune.py` is the script form of `segtune tune` for a clone.
"""
