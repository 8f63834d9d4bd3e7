"""The epoch budget of a search (runners/plan/budget.py) and the --sampler / --scheduler / --budget-epochs options."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from segtune.core.record import PreparedDataset, RunSettings
from segtune.core.sections import Budget, FrameworkEntry, Objective, Resources, Schedule
from segtune.runners.command import main
from segtune.runners.plan.budget import expected_trial_epochs, trials_for_budget
from segtune.runners.search.endings import BUDGET_STATE_FILE, EpochBudget
from segtune.search_spaces.space import parse_space


# ---- arithmetic ---------------------------------------------------------------------------------
def test_expected_trial_epochs():
    assert expected_trial_epochs(30, 3, 3, early_stopping=False) == 30
    # rungs 3, 9, 27, then 30: 3 + 6/3 + 18/9 + 3/27
    assert expected_trial_epochs(30, 3, 3, early_stopping=True) == pytest.approx(3 + 2 + 2 + 3 / 27)
    assert expected_trial_epochs(8, 8, 3, early_stopping=True) == 8  # grace = max: nobody is stopped


def test_trials_for_budget():
    assert trials_for_budget(150, 30, 3, 3, early_stopping=False) == 5
    assert trials_for_budget(100, 30, 3, 3, early_stopping=False) == 4  # the last one is cut by the budget
    assert trials_for_budget(150, 30, 3, 3, early_stopping=True) == 32  # 150 / 7.11 = 21.1, half again
    assert trials_for_budget(1, 30, 3, 3, early_stopping=True) == 1


# ---- the stopper, fed as Ray feeds it -------------------------------------------------------------
def test_budget_counts_each_trials_latest_epoch(tmp_path):
    budget = EpochBudget(5, tmp_path)
    assert not budget("a", {"training_iteration": 1})
    assert not budget("b", {"training_iteration": 1})
    assert not budget("a", {"training_iteration": 2})
    assert not budget("a", {"training_iteration": 2})  # a retried epoch is not counted twice
    assert budget.spent == 3 and not budget.stop_all()
    assert not budget("b", {"training_iteration": 2})
    assert not budget("a", {"training_iteration": 3})  # the 5th epoch: no trial is stopped alone ...
    assert budget.stop_all() and budget.ran_out  # ... the search ends
    assert (tmp_path / BUDGET_STATE_FILE).is_file()


def test_resumed_budget_goes_on_from_its_file(tmp_path):
    """On --resume Ray hands results to the stopper it pickled; the resumed run builds a new one
    (which the end reasons ask): both see the same count, read back from the experiment."""
    first = EpochBudget(4, tmp_path)
    first("a", {"training_iteration": 1})
    first("b", {"training_iteration": 2})
    pickled = pickle.loads(pickle.dumps(first))  # what Ray restores from its snapshot
    resumed = EpochBudget(4, tmp_path)  # what the resumed run builds
    assert resumed.spent == 3 and not resumed.stop_all()
    pickled("c", {"training_iteration": 1})  # counted by the resumed run's budget ...
    assert pickled.stop_all() and resumed.ran_out and resumed.spent == 4  # ... which the end reasons ask


def test_budget_must_be_positive():
    with pytest.raises(ValueError):
        EpochBudget(0)


def test_budget_ends_a_real_ray_search(tmp_path):
    """Two trials at a time report epochs; the search ends within one report of the budget and the
    third trial, pending, never trains past it."""
    import ray
    from ray import tune

    def trainable(config):
        for _ in range(5):
            tune.report({"score": 1.0})

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        grid = tune.Tuner(
            tune.with_resources(trainable, {"cpu": 1}),
            tune_config=tune.TuneConfig(num_samples=3, max_concurrent_trials=2, metric="score", mode="max"),
            run_config=tune.RunConfig(
                storage_path=str(tmp_path), name="budget", verbose=0, stop=EpochBudget(6, tmp_path)
            ),
        ).fit()
    finally:
        ray.shutdown()
    reported = sum(int(r.metrics.get("training_iteration") or 0) for r in grid if r.metrics)
    print(f"epochs reported under a budget of 6: {reported}")
    assert 6 <= reported <= 7  # the report reaching the budget, plus at most one already on its way
    assert reported < 15  # without the budget: 3 trials x 5


# ---- the options ---------------------------------------------------------------------------------
def _settings(
    tmp_path: Path, sampler: str = "tpe", scheduler: str = "asha", budget_epochs: int | None = None
) -> RunSettings:
    dataset = PreparedDataset("d", "h", tmp_path, tmp_path, tmp_path, tmp_path, (1,), ("a",))
    space = parse_space({"lr0": {"type": "float", "low": 1e-3, "high": 1e-2}, "imgsz": 64}, framework="yolo")
    return RunSettings(
        dataset,
        (FrameworkEntry("yolo", models=("yolo11n-seg.yaml",), space=space.to_dict()),),
        space.to_dict(),
        Objective("segm/AP", "max"),
        Budget(6, num_samples=4, budget_epochs=budget_epochs),
        Schedule(sampler, scheduler, grace_period=1),
        Resources(max_concurrent=2),
        experiment_dir=str(tmp_path / "exp"),
    )


@pytest.mark.parametrize("search", [{}, {"sampler": "random", "scheduler": "none", "budget_epochs": 12}])
def test_build_tuner_wires_sampler_scheduler_and_budget(tmp_path, search):
    import optuna
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.stopper import CombinedStopper

    from segtune.runners.search.internals import run_config_of, tune_config_of
    from segtune.runners.search.tuner import build_tuner
    from segtune.search_spaces.space import SearchSpace

    settings = _settings(tmp_path, **search)
    (tmp_path / "exp").mkdir()
    tuner = build_tuner(settings, SearchSpace.from_dict(settings.space), tmp_path / "exp")
    tune_config = tune_config_of(tuner)  # Ray has no public getter: the Tuner as built
    run_config = run_config_of(tuner)
    searcher = tune_config.search_alg.searcher.searcher  # GrowableSearch -> ConcurrencyLimiter -> ours
    random = search.get("sampler") == "random"
    assert type(searcher.study.sampler) is (optuna.samplers.RandomSampler if random else optuna.samplers.TPESampler)
    assert isinstance(tune_config.scheduler, FIFOScheduler if random else ASHAScheduler)
    assert isinstance(tune_config.scheduler, ASHAScheduler) is not random
    if random:
        assert isinstance(run_config.stop, CombinedStopper)
        budgets = [s for s in run_config.stop._stoppers if isinstance(s, EpochBudget)]
        assert len(budgets) == 1 and budgets[0].budget == 12
        assert budgets[0].state_file == tmp_path / "exp" / BUDGET_STATE_FILE
    else:
        assert not isinstance(run_config.stop, (CombinedStopper, EpochBudget))


@pytest.mark.parametrize(
    "options, words",
    [
        (["--scheduler", "none", "--grace-period", "2"], ["--grace-period", "--scheduler none"]),
        (["--budget-epochs", "0"], ["--budget-epochs", "positive"]),
        (["--sampler", "grid"], ["--sampler", "grid"]),
    ],
)
def test_bad_search_options_are_one_line(capsys, tmp_path, options, words):
    try:
        status = main(["--framework", "yolo", "--storage", str(tmp_path / "runs"), "--name", "exp", *options])
    except SystemExit as exc:  # argparse's own refusals (an unknown choice)
        status = exc.code
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2
    assert len(err) == 1 and "error" in err[0], err
    for word in words:
        assert word in err[0], (word, err[0])
    assert not (tmp_path / "runs").exists()


def test_a_trial_cut_by_the_epoch_budget_says_so(tmp_path):
    """Its end reason names the budget (and TPE is told PRUNED, as for ASHA's cuts: runners/search/study.py)."""
    from segtune.runners.search.endings import EndLog, TimeBudget

    budget = EpochBudget(3, tmp_path)
    end_log = EndLog(tmp_path, max_epochs=2, budget=TimeBudget(None), epoch_budget=budget)
    budget("a", {"training_iteration": 2})
    assert end_log.decide("a", {"training_iteration": 2}) == "finished"
    budget("b", {"training_iteration": 1})
    assert end_log.decide("b", {"training_iteration": 1}) == "epoch_budget"
    assert json.loads((tmp_path / "trial_b" / "end_reason.json").read_text()) == {
        "reason": "epoch_budget",
        "epochs": 1,
        "max_epochs": 2,
        "budget_epochs": 3,
    }


@pytest.mark.parametrize("option, value", [("sampler", "random"), ("scheduler", "none"), ("budget-epochs", 50)])
def test_resume_keeps_the_sampler_scheduler_and_budget(tmp_path, option, value):
    from segtune.core.errors import ConfigError
    from segtune.runners.command.request import parse_request
    from segtune.runners.plan.resume import check_resume_options

    request = parse_request(["--framework", "yolo", "--name", "x", "--resume", f"--{option}", str(value)])
    with pytest.raises(ConfigError, match=f"--{option} {value} differs from this experiment's"):
        check_resume_options(request, _settings(tmp_path, budget_epochs=40))
