"""The search: Ray Tune and Optuna glue, through their public Searcher/Scheduler/Stopper/Callback contracts.

    tuner        the experiment's Ray Tune `Tuner`, new or resumed: trainable, searcher, scheduler, stoppers
    searcher     Optuna's sampler (TPE, or random as a baseline) behind Ray's OptunaSearch
    study        the persistent Optuna study (`StudySearch`): every epoch reported, every end told
    confirming   confirmation trials proposed after the search (`ConfirmingSearcher`), never stopped by ASHA
    schedulers   ASHA that records its cuts, per framework; FIFO that ends trials at their last epoch
    endings      why each trial ended, written into its directory (`EndLog`, `EndReasonCallback`)
    stoppers     the epoch budget (`--budget-epochs`)
    warm_start   earlier experiments' trials seeding a new study (`--warm-start`)
"""
__all__ = ["confirming", "endings", "schedulers", "searcher", "stoppers", "study", "tuner", "warm_start"]
