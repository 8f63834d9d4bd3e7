"""The search: Ray Tune and Optuna glue, through their public Searcher/Scheduler/Stopper/Callback contracts.

tuner        the experiment's Ray Tune `Tuner`, new or resumed: trainable, searcher, scheduler, stoppers
searcher     Optuna's sampler (TPE, or random as a baseline) for the study
study        the persistent Optuna study (`StudySearch`, a Ray Searcher): every epoch reported, every end told
confirming   confirmation trials proposed after the search (`ConfirmingSearcher`), never stopped by ASHA
schedulers   ASHA that records its cuts, per framework; FIFO that ends trials at their last epoch
endings      why each trial ended (`EndLog`, `EndReasonCallback`) and the budgets that end a search
             (`TimeBudget`, `EpochBudget`)
warm_start   earlier experiments' trials seeding a new study (`--warm-start`)
internals    the few Ray details with no public API, isolated and version-checked (tests/test_library_internals.py)
"""

__all__ = ["confirming", "endings", "internals", "schedulers", "searcher", "study", "tuner", "warm_start"]
