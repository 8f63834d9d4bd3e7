"""Every unpublished detail of Ray Tune that segtune relies on, in one place (Optuna needs none).

The rest of segtune uses Ray and Optuna through their public contracts only: Searcher, TrialScheduler,
Stopper and Callback subclasses, `optuna.create_study`/`ask`/`tell`, a study's storage by its public
methods, distributions by their public attributes (search_spaces/membership.py). The one public but
discouraged Optuna call, `optuna.trial.Trial(study, trial_id)` (a resumed searcher reattaching to its
running trials, runners/search/study.py), is checked by the same test. What is left of Ray has no
public way, and each use is here, behind a public function name, saying what it is, why there is no
public way, and the versions checked:

- `resuming_tuner`: `Tuner(_tuner_kwargs={"resume_config": ...})`.
- `run_config_of`, `tune_config_of`: `Tuner._local_tuner` (a `TunerInternal`).
- `trials_created`, `searcher_finished`, `grown_state`: the keys of `SearchGenerator.get_state()`.
- `EARLY_END_METHOD` names a behaviour, not a name segtune uses: Ray ends a search whose stopper
  said stop-all (the time budget) through `SearchAlgorithm.set_finished` (from the private
  `TuneController._stop_experiment_if_needed`), without telling the searcher about the trials it ends.

Checked against ray 2.60.0 and optuna 5.1.0. tests/test_library_internals.py fails, naming this module,
when any of them changes; pyproject.toml bounds Ray to the minor version checked (`ray[tune]<2.61`).
On a Ray upgrade: run that test, fix what it names here, then move the bound.
"""

from __future__ import annotations

from typing import Any

from ray import tune
from ray.tune.search import SearchGenerator

# The versions everything here was checked with (named in tests/test_library_internals.py's failures).
CHECKED_RAY = "2.60.0"
CHECKED_OPTUNA = "5.1.0"

# ---- Tuner ---------------------------------------------------------------------------------------
# `Tuner.restore` would rebuild the whole Tuner (searcher, scheduler, stoppers, callbacks) from the
# pickle of the first run, so that a grown --num-samples or a new --time-budget could not reach a
# resumed search. A Tuner built anew is told to resume its experiment directory only through the
# internal `_tuner_kwargs` (forwarded to `TunerInternal` and on to `tune.run(resume_config=...)`);
# calling `tune.run` itself would give an ExperimentAnalysis, not the ResultGrid the driver reads.
TUNER_KWARGS = "_tuner_kwargs"


def resuming_tuner(
    trainable: Any, *, param_space: dict, tune_config: tune.TuneConfig, run_config: tune.RunConfig, resume: bool
) -> tune.Tuner:
    """A Tuner as `tune.Tuner(...)` builds it; `resume`: it continues the experiment already in
    `run_config`'s storage as `Tuner.restore` would hand it to Ray (finished and errored trials stay
    as they are, unfinished ones continue from their last checkpoint).

    Example:
        >>> tuner = resuming_tuner(trainable, param_space={}, tune_config=tune.TuneConfig(),
        ...                        run_config=tune.RunConfig(name="exp", storage_path="/runs"), resume=True)
    """
    extra = {TUNER_KWARGS: {"resume_config": tune.ResumeConfig()}} if resume else {}
    return tune.Tuner(trainable, param_space=param_space, tune_config=tune_config, run_config=run_config, **extra)


def run_config_of(tuner: tune.Tuner) -> tune.RunConfig:
    """The RunConfig a Tuner will run with, to be changed in place before `fit()`.

    `Tuner.restore` restores the first run's RunConfig (its callbacks, its verbosity) and the Tuner has
    no public getter or setter for it: `Tuner._local_tuner` (the TunerInternal of a driver that is not
    a Ray client) and its public `get_run_config()`."""
    return tuner._local_tuner.get_run_config()


def tune_config_of(tuner: tune.Tuner) -> tune.TuneConfig:
    """The TuneConfig a Tuner was built with (no public getter): `Tuner._local_tuner._tune_config`.
    For tests that check what `build_tuner` wired, not used by a search."""
    return tuner._local_tuner._tune_config


# ---- SearchGenerator -----------------------------------------------------------------------------
# A resumed search may have grown (--num-samples); Ray's SearchGenerator keeps its count of created
# trials, its total and its "the searcher said FINISHED" private (`_counter`, `_total_samples`,
# `_finished`). Its public `get_state()`/`set_state()` (what Ray writes into, and reads from, the
# experiment's search_gen_state-*.json) carry them under these keys, which Ray does not document.
COUNTER, TOTAL, FINISHED = "counter", "total_samples", "finished"


def trials_created(generator: SearchGenerator) -> int:
    """How many trials the generator has created (the searcher suggested a config for)."""
    return int(generator.get_state()[COUNTER])


def searcher_finished(generator: SearchGenerator) -> bool:
    """The searcher said FINISHED (or Ray called `set_finished`)."""
    return bool(generator.get_state()[FINISHED])


def grown_state(state: dict[str, Any], num_samples: int) -> dict[str, Any]:
    """A SearchGenerator state (as `get_state()` gave it) for a search of at least `num_samples`
    trials: a finished search that was grown is not finished any more."""
    total = max(int(state[TOTAL]), num_samples)
    return {**state, TOTAL: total, FINISHED: bool(state[FINISHED]) and int(state[COUNTER]) >= total}


# Relied on, not called: when a stopper's `stop_all()` is True (the time budget ran out), Ray's
# TuneController ends every live trial and calls `search_alg.set_finished()`; the searcher hears of
# none of those trials (runners/search/tuner.py: GrowableSearch.set_finished tells it).
EARLY_END_METHOD = ("ray.tune.execution.tune_controller", "TuneController", "_stop_experiment_if_needed")
