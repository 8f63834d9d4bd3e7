"""Loud checks of what segtune relies on in Ray Tune and Optuna beyond their documented contracts.

Every unpublished detail segtune uses is in segtune/runners/search/internals.py; these tests check
each of them on the installed versions (the attribute exists, the signature or keys are as expected,
a small behaviour holds) and fail with a message naming the module to fix. A few public but loosely
documented behaviours the search depends on are checked too. On a Ray or Optuna upgrade, run this
file first (it is fast: no Ray cluster, no training).
"""

from __future__ import annotations

import inspect
import time

import optuna
import pytest
import ray
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from ray import tune
from ray.tune.search import ConcurrencyLimiter, Searcher, SearchGenerator

from segtune.runners.search import internals
from segtune.search_spaces.membership import holds

FIX_INTERNALS = (
    "fix segtune/runners/search/internals.py (see its docstring; checked with "
    f"ray {internals.CHECKED_RAY}, optuna {internals.CHECKED_OPTUNA}), then the bounds in pyproject.toml"
)


def _changed(what: str) -> str:
    return f"ray {ray.__version__} / optuna {optuna.__version__}: {what} changed; {FIX_INTERNALS}"


class _Fixed(Searcher):
    """The smallest searcher: the same config every time."""

    def __init__(self) -> None:
        super().__init__(metric="score", mode="max")

    def suggest(self, trial_id: str) -> dict:
        return {"x": 1}

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        pass


def _trainable(config: dict) -> None:
    return None


# ---- Tuner: _tuner_kwargs, _local_tuner ------------------------------------------------------------
def test_a_new_tuner_can_be_told_to_resume(tmp_path):
    assert internals.TUNER_KWARGS in inspect.signature(tune.Tuner.__init__).parameters, _changed(
        "Tuner(_tuner_kwargs=...) (how a newly built Tuner resumes: internals.resuming_tuner)"
    )
    assert "resume_config" in inspect.signature(tune.run).parameters, _changed(
        "tune.run(resume_config=...) (what _tuner_kwargs are forwarded to)"
    )
    from ray.tune.impl.tuner_internal import TunerInternal

    assert "**self._tuner_kwargs" in inspect.getsource(TunerInternal), _changed(
        "TunerInternal's forwarding of _tuner_kwargs to tune.run (internals.resuming_tuner)"
    )
    tune_config, run_config = tune.TuneConfig(num_samples=3), tune.RunConfig(name="exp", storage_path=str(tmp_path))
    tuner = internals.resuming_tuner(
        _trainable, param_space={"a": 1}, tune_config=tune_config, run_config=run_config, resume=True
    )
    assert internals.tune_config_of(tuner) is tune_config, _changed("Tuner._local_tuner._tune_config")
    assert isinstance(internals.run_config_of(tuner), tune.RunConfig), _changed("Tuner._local_tuner.get_run_config()")
    assert internals.run_config_of(tuner).name == "exp", _changed("Tuner._local_tuner.get_run_config()")
    forwarded = getattr(tuner._local_tuner, "_tuner_kwargs", None)
    assert isinstance((forwarded or {}).get("resume_config"), tune.ResumeConfig), _changed(
        "TunerInternal keeping _tuner_kwargs for tune.run (internals.resuming_tuner)"
    )


def test_the_run_config_given_back_is_the_one_fit_reads(tmp_path):
    """`restore_tuner` changes a restored Tuner's RunConfig in place: it must be the object fit() reads."""
    from ray.tune.impl.tuner_internal import TunerInternal

    tuner = internals.resuming_tuner(
        _trainable,
        param_space={},
        tune_config=tune.TuneConfig(),
        run_config=tune.RunConfig(name="exp", storage_path=str(tmp_path)),
        resume=False,
    )
    internals.run_config_of(tuner).verbose = 0
    assert isinstance(tuner._local_tuner, TunerInternal), _changed("Tuner._local_tuner")
    assert "self._run_config" in inspect.getsource(TunerInternal._get_tune_run_arguments), _changed(
        "TunerInternal reading its _run_config at fit() (internals.run_config_of)"
    )
    assert internals.run_config_of(tuner).verbose == 0, _changed("Tuner._local_tuner.get_run_config()")


# ---- SearchGenerator: get_state()'s keys --------------------------------------------------------------
def test_the_search_generator_state_keys():
    generator = SearchGenerator(_Fixed())
    state = generator.get_state()
    keys = {internals.COUNTER, internals.TOTAL, internals.FINISHED}
    assert keys <= set(state), _changed(
        f"SearchGenerator.get_state() keys (expected {sorted(keys)}, got {sorted(state)})"
    )
    generator.set_state({**state, internals.COUNTER: 5, internals.TOTAL: 5, internals.FINISHED: False})
    assert internals.trials_created(generator) == 5 and generator.total_samples == 5, _changed(
        "SearchGenerator.set_state/get_state round trip"
    )
    assert SearchGenerator.is_finished(generator), _changed("SearchGenerator.is_finished reading the counter")
    generator.set_state(internals.grown_state(generator.get_state(), 8))
    assert generator.total_samples == 8 and not SearchGenerator.is_finished(generator), _changed(
        "SearchGenerator.set_state of a grown total (internals.grown_state)"
    )
    generator.set_finished()
    assert internals.searcher_finished(generator), _changed("SearchGenerator.set_finished and get_state()['finished']")


def test_grown_state_reopens_only_a_search_that_has_trials_to_go():
    state = {internals.COUNTER: 4, internals.TOTAL: 4, internals.FINISHED: True, "experiment": None}
    assert internals.grown_state(state, 6) == {**state, internals.TOTAL: 6, internals.FINISHED: False}
    assert internals.grown_state(state, 3) == state  # a smaller --num-samples takes nothing away
    assert internals.grown_state({**state, internals.FINISHED: False}, 2)[internals.FINISHED] is False


def test_ray_tells_the_search_algorithm_when_a_stopper_ends_the_experiment():
    """GrowableSearch.set_finished tells the searchers about the trials Ray ends on the time budget."""
    import importlib

    module, cls, method = internals.EARLY_END_METHOD
    controller = getattr(importlib.import_module(module), cls, None)
    source = inspect.getsource(getattr(controller, method, None) or (lambda: None))
    assert "stop_all()" in source and "set_finished()" in source, _changed(
        f"{cls}.{method} (Ray ending a search through search_alg.set_finished: runners/search/tuner.py GrowableSearch)"
    )


# ---- public contracts the search relies on (fail loudly too) ------------------------------------------
def test_the_concurrency_limiter_names_its_live_trials():
    limiter = ConcurrencyLimiter(_Fixed(), max_concurrent=2)
    limiter.suggest("a")
    assert limiter.live_trials == {"a"}, _changed("ConcurrencyLimiter.live_trials (GrowableSearch.set_finished)")


def test_the_timeout_stopper_says_stop_on_every_call_once_spent():
    """TimeBudget.expired remembers a True of stop_all()."""
    from ray.tune.stopper import TimeoutStopper

    stopper = TimeoutStopper(0.01)
    assert stopper.stop_all() is False
    time.sleep(0.05)
    assert stopper.stop_all() is True and stopper.stop_all() is True, _changed("TimeoutStopper.stop_all")


def test_asha_defaults_and_forgetting_a_trial():
    """ConfirmationAwareASHA repeats ASHA's defaults for time_attr and max_t, and forgets a
    confirmation trial through on_trial_remove."""
    from types import SimpleNamespace

    from ray.tune.schedulers import ASHAScheduler

    from segtune.runners.search.confirming import ConfirmationAwareASHA

    ours, ray_s = inspect.signature(ConfirmationAwareASHA.__init__), inspect.signature(ASHAScheduler.__init__)
    for name in ("time_attr", "max_t"):
        assert ours.parameters[name].default == ray_s.parameters[name].default, _changed(
            f"ASHAScheduler's default {name} (repeat it in runners/search/confirming.py)"
        )
    scheduler = ASHAScheduler(metric="score", mode="max", max_t=9)
    trial = SimpleNamespace(trial_id="t", config={})
    scheduler.on_trial_add(None, trial)
    scheduler.on_trial_remove(None, trial)
    with pytest.raises(KeyError):  # forgotten: a result for it finds no bracket
        scheduler.on_trial_result(None, trial, {"training_iteration": 1, "score": 1.0})


def test_optuna_study_trials_reattach_by_storage_id(tmp_path):
    """StudySearch keeps its own study, finds a trial's storage id from its number and reattaches
    to it after a resume, all through Optuna's public storage and Trial APIs."""
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'optuna.db'}")
    study = optuna.create_study(
        storage=storage, study_name="s", direction="maximize", pruner=optuna.pruners.NopPruner()
    )
    asked = study.ask(fixed_distributions={"x": FloatDistribution(0, 1)})
    study_id = storage.get_study_id_from_name("s")
    storage_id = storage.get_trial_id_from_study_id_trial_number(study_id, asked.number)
    again = optuna.trial.Trial(study, storage_id)
    assert again.number == asked.number and again.params == asked.params
    again.report(0.5, 1)
    storage.set_trial_user_attr(storage_id, "k", "v")
    frozen = storage.get_trial(storage_id)
    assert frozen.intermediate_values == {1: 0.5} and frozen.user_attrs == {"k": "v"}
    study.sampler = optuna.samplers.RandomSampler(seed=0)  # a restored sampler replaces the new one
    study.tell(asked.number, state=optuna.trial.TrialState.FAIL)
    assert storage.get_trial(storage_id).state == optuna.trial.TrialState.FAIL


# ---- distributions: segtune's membership check against Optuna's own ------------------------------------
DISTRIBUTIONS = [
    FloatDistribution(0.05, 0.5),
    FloatDistribution(1e-4, 1e-1, log=True),
    FloatDistribution(0.0, 1.0, step=0.25),
    IntDistribution(8, 32, step=8),
    IntDistribution(1, 64, log=True),
    IntDistribution(0, 3),
    CategoricalDistribution(["SGD", "AdamW"]),
    CategoricalDistribution([0, 1]),
    CategoricalDistribution([None, 2.5]),
]
VALUES = [
    0.05,
    0.5,
    0.51,
    0.0,
    -1.0,
    1e-4,
    0.25,
    0.3,
    8,
    12,
    16,
    32,
    40,
    1,
    64,
    3,
    "SGD",
    "Adam",
    None,
    2.5,
    True,
    "0.5",
    float("nan"),
    [1],
]


@pytest.mark.parametrize("distribution", DISTRIBUTIONS, ids=repr)
def test_holds_agrees_with_optuna_s_own_check(distribution):
    if not hasattr(distribution, "_contains"):
        pytest.skip(f"optuna {optuna.__version__} has no _contains to compare with (holds needs none)")
    for value in VALUES:
        try:
            expected = bool(distribution._contains(distribution.to_internal_repr(value)))
        except (ValueError, TypeError):
            expected = False
        assert holds(distribution, value) is expected, (distribution, value)


def test_holds_on_its_own():
    assert holds(FloatDistribution(0.0, 1.0, step=0.25), 0.5)
    assert not holds(FloatDistribution(0.0, 1.0, step=0.25), 0.3)
    assert not holds(FloatDistribution(1e-4, 1e-1, log=True), 0.0)
    assert holds(IntDistribution(8, 32, step=8), 16) and not holds(IntDistribution(8, 32, step=8), 12)
    assert holds(CategoricalDistribution(["SGD", "AdamW"]), "SGD")
    assert not holds(CategoricalDistribution(["SGD", "AdamW"]), "Adam")
    assert not holds(FloatDistribution(0.0, 1.0), "x")
