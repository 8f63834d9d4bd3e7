"""The Optuna study, warm starts, end reasons and resume options, without a search (seconds).

The end-to-end counterparts (a real search, killed, resumed, grown, warm-started) are in
test_study_e2e.py and test_resume.py."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import optuna
import pytest
from conftest import run_tune
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState

from segtune.core.errors import ConfigError
from segtune.core.record import PreparedDataset, RunSettings
from segtune.core.sections import Budget, FrameworkEntry, Objective, Resources, Schedule
from segtune.search_spaces.space import SearchSpace

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _settings(
    framework: str = "yolo",
    metric: str = "segm/AP",
    mode: str = "max",
    space: dict | None = None,
    time_budget: float | None = None,
) -> RunSettings:
    dataset = PreparedDataset(
        name="d",
        content_hash="0",
        train_json=Path("t.json"),
        train_images=Path("t"),
        val_json=Path("v.json"),
        val_images=Path("v"),
        category_ids=(1,),
        category_names=("a",),
    )
    space = space or {}
    return RunSettings(
        data=dataset,
        frameworks=(FrameworkEntry(framework, models=("m",), space=space),),
        space=space,
        objective=Objective(metric, mode),
        budget=Budget(3, num_samples=4, time_budget=time_budget),
        schedule=Schedule(grace_period=1),
        resources=Resources(max_concurrent=2),
    )


def _experiment(
    path: Path, trials: list[dict], settings: RunSettings | None = None, direction: str = "maximize"
) -> Path:
    """An experiment directory with a segtune.json and a study of `trials` (params, distributions,
    value, state, intermediate_values) in its default storage."""
    path.mkdir(parents=True)
    settings = settings or _settings()
    settings.save(path)
    study = optuna.create_study(storage=settings.study_url(path), study_name=path.name, direction=direction)
    for i, trial in enumerate(trials):
        attrs = {"segtune_trial_id": f"old{i}", "trial_dir": "x"}
        study.add_trial(optuna.trial.create_trial(user_attrs=attrs, **trial))
    return path


# ---- warm start ----------------------------------------------------------------------------------
def test_tpe_follows_the_warm_start_data(tmp_path):
    """Old trials say: the higher x, the better. TPE's proposals on the warm-started study go to the
    top of the range at once; on an empty study its first proposals are random."""
    from segtune.runners.search.warm_start import find_sources, load_warm_start

    x = FloatDistribution(0.0, 1.0)
    old = [{"params": {"x": v / 23}, "distributions": {"x": x}, "value": v / 23} for v in range(24)]
    _experiment(tmp_path / "old", old)
    space = SearchSpace(source="test", framework="yolo", searched={"x": x}, fixed={})
    warm = load_warm_start(find_sources([Path("old")], tmp_path, "yolo", "segm/AP", "max"), space, "max", 3)
    assert len(warm.trials) == 24 and warm.points == [{"x": 1.0}, {"x": 22 / 23}, {"x": 21 / 23}]

    def top_share(trials) -> float:
        sampler = optuna.samplers.TPESampler(seed=1, n_startup_trials=10)
        study = optuna.create_study(direction="maximize", sampler=sampler)
        for trial in trials:
            study.add_trial(trial)
        proposals = []
        for _ in range(10):
            trial = study.ask({"x": x})
            proposals.append(trial.params["x"])
            study.tell(trial, trial.params["x"])
        return sum(p > 0.8 for p in proposals) / len(proposals)

    assert top_share(warm.trials) >= 0.7
    assert top_share([]) <= 0.4  # random startup: about a fifth lands there


def test_warm_start_keeps_what_the_new_space_can_hold(tmp_path):
    from segtune.runners.search.warm_start import find_sources, load_warm_start

    old_x, old_kind, gone = FloatDistribution(0.0, 2.0), CategoricalDistribution(["a", "b"]), FloatDistribution(0, 1)
    dists = {"x": old_x, "kind": old_kind, "gone": gone}
    _experiment(
        tmp_path / "old",
        [
            {"params": {"x": 0.5, "kind": "b", "gone": 0.1}, "distributions": dists, "value": 3.0},
            {"params": {"x": 1.5, "kind": "a", "gone": 0.2}, "distributions": dists, "value": 9.0},  # nothing fits
            {
                "params": {"x": 0.7, "kind": "a", "gone": 0.3},
                "distributions": dists,
                "state": TrialState.PRUNED,
                "intermediate_values": {1: 1.0, 2: 1.5},
            },
            {"params": {"x": 0.9, "kind": "b", "gone": 0.4}, "distributions": dists, "state": TrialState.FAIL},
        ],
    )
    new_kind = CategoricalDistribution(["c", "b"])  # "b" is now choice 1: stored as index 1, not 0
    searched = {"x": FloatDistribution(0.0, 1.0), "kind": new_kind}
    space = SearchSpace(source="test", framework="yolo", searched=searched, fixed={})
    warm = load_warm_start(find_sources([tmp_path / "old"], tmp_path, "yolo", "segm/AP", "max"), space, "max", 3)

    complete, pruned = warm.trials
    assert complete.state == TrialState.COMPLETE and complete.value == 3.0
    assert complete.params == {"x": 0.5, "kind": "b"} and complete.distributions == dict(space.searched)
    assert pruned.state == TrialState.PRUNED and pruned.params == {"x": 0.7}
    assert pruned.intermediate_values == {1: 1.0, 2: 1.5}
    assert complete.user_attrs["warm_start_from"] == "old" and complete.user_attrs["warm_start_trial_id"] == "old0"
    assert "segtune_trial_id" not in complete.user_attrs  # not a trial of the new experiment
    assert warm.points == [{"x": 0.5, "kind": "b"}]
    assert "\n" not in warm.warning
    for part in (
        "gone (not searched now, 3 trials)",
        "x (outside the new range, 1 trials)",
        "kind (outside the new range, 2 trials)",
    ):
        assert part in warm.warning


def test_warm_start_sources_are_checked(tmp_path):
    from segtune.runners.search.warm_start import find_sources

    point = [{"params": {"x": 0.5}, "distributions": {"x": FloatDistribution(0, 1)}, "value": 1.0}]
    _experiment(tmp_path / "yolo-exp", point)
    _experiment(tmp_path / "loss-exp", point, _settings(metric="yolo/val/seg_loss", mode="min"), "minimize")
    (tmp_path / "empty").mkdir()
    _settings().save(tmp_path / "empty")
    for name, framework, needle in [
        ("yolo-exp", "maskrcnn", "is a yolo experiment; this search is maskrcnn"),
        ("loss-exp", "yolo", "optimised yolo/val/seg_loss (min)"),
        ("nothing", "yolo", "not an experiment"),
        ("empty", "yolo", "has no Optuna study"),
    ]:
        with pytest.raises(ConfigError, match=needle.replace("(", r"\(").replace(")", r"\)")):
            find_sources([Path(name)], tmp_path, framework, "segm/AP", "max")


def test_a_framework_mismatch_is_refused_before_anything_is_written(tmp_path):
    point = [{"params": {"x": 0.5}, "distributions": {"x": FloatDistribution(0, 1)}, "value": 1.0}]
    _experiment(tmp_path / "yolo-exp", point)
    proc = run_tune(
        "--framework",
        "maskrcnn",
        "--warm-start",
        "yolo-exp",
        "--storage",
        str(tmp_path),
        "--name",
        "new",
        "--cache-dir",
        str(tmp_path / "cache"),
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "is a yolo experiment" in proc.stderr
    assert not (tmp_path / "new").exists() and not (tmp_path / "cache").exists()


def test_a_study_storage_that_cannot_be_opened_is_one_line(tmp_path):
    from segtune.runners.search.study import open_storage

    for url in ("not-a-url", f"sqlite:///{tmp_path}/missing/dir/x.db", "postgresql://user@localhost:1/db"):
        with pytest.raises(ConfigError, match="cannot be opened") as error:
            open_storage(url)
        assert "\n" not in str(error.value) and "--study-storage" in str(error.value)


# ---- the study searcher --------------------------------------------------------------------------
def _searcher(tmp_path: Path):
    from segtune.runners.search.endings import EndLog, TimeBudget
    from segtune.runners.search.study import StudyPlace, StudySearch

    end_log = EndLog(tmp_path, max_epochs=3, budget=TimeBudget(None))
    place = StudyPlace(url=f"sqlite:///{tmp_path / 'optuna.db'}", name="exp", experiment_dir=tmp_path, framework="yolo")
    searcher = StudySearch(
        space={"x": FloatDistribution(0, 1)},
        metric="score",
        mode="max",
        sampler=optuna.samplers.TPESampler(seed=0),
        place=place,
        end_log=end_log,
    )
    return searcher, end_log


def _row(epoch: int, value: float, **extra) -> dict:
    return {"training_iteration": epoch, "score": value, **extra}


def test_the_study_is_told_every_epoch_and_why_each_trial_ended(tmp_path):
    searcher, end_log = _searcher(tmp_path)
    for trial_id in ("done", "cut", "diverged", "failed", "framework"):
        searcher.suggest(trial_id)
    # Ray hands the result it stops a trial on (ASHA's cut, max_t) to on_trial_complete only.
    searcher.on_trial_result("done", _row(1, 1.0))
    searcher.on_trial_result("done", _row(2, 2.0))
    searcher.on_trial_complete("done", _row(3, 3.0))
    end_log.mark_asha("cut")
    searcher.on_trial_complete("cut", _row(1, 0.5))
    searcher.on_trial_result("diverged", _row(1, 0.7))
    searcher.on_trial_result("diverged", _row(2, 0.0, **{"segtune/diverged": 1}))  # a placeholder, not an epoch
    searcher.on_trial_complete("diverged", _row(2, 0.0, **{"segtune/diverged": 1}))
    searcher.on_trial_complete("failed", None, error=True)
    searcher.on_trial_result("framework", _row(1, 0.9))
    searcher.on_trial_complete("framework", _row(1, 0.9))

    study = optuna.load_study(study_name="exp", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    by_id = {t.user_attrs["segtune_trial_id"]: t for t in study.trials}
    expected = {
        "done": (TrialState.COMPLETE, {1: 1.0, 2: 2.0, 3: 3.0}, "finished"),
        "cut": (TrialState.PRUNED, {1: 0.5}, "asha"),
        "diverged": (TrialState.FAIL, {1: 0.7}, "diverged"),
        "failed": (TrialState.FAIL, {}, "failed"),
        "framework": (TrialState.COMPLETE, {1: 0.9}, "framework"),
    }
    for trial_id, (state, intermediate, reason) in expected.items():
        trial = by_id[trial_id]
        assert (trial.state, trial.intermediate_values, trial.user_attrs["end_reason"]) == (state, intermediate, reason)
        assert trial.user_attrs["trial_dir"] == str(tmp_path / f"trial_{trial_id}")
        assert json.loads((tmp_path / f"trial_{trial_id}" / "end_reason.json").read_text())["reason"] == reason
        assert json.loads((tmp_path / f"trial_{trial_id}" / "optuna_trial.json").read_text())["number"] == trial.number
    assert by_id["done"].value == 3.0 and by_id["cut"].value == 0.5
    assert study.user_attrs["objective"] == "score" and study.user_attrs["framework"] == "yolo"


def test_the_study_searcher_proposes_what_rays_optuna_search_would(tmp_path):
    """StudySearch asks Optuna itself (Ray's OptunaSearch keeps its study private): the same sampler,
    seed, start point and results give the same configurations, and several objectives work alike."""
    from ray.tune.search.optuna import OptunaSearch

    from segtune.runners.search.endings import EndLog, TimeBudget
    from segtune.runners.search.study import StudyPlace, StudySearch

    space = {
        "x": FloatDistribution(0, 1),
        "n": optuna.distributions.IntDistribution(1, 8),
        "c": CategoricalDistribution(["a", "b", "c"]),
    }
    start = [{"x": 0.5, "n": 2, "c": "b"}]
    for metric, mode in (("score", "max"), (["score", "cost"], ["max", "min"])):
        experiment = tmp_path / str(len(mode))
        place = StudyPlace(
            url=f"sqlite:///{experiment / 'optuna.db'}",
            name="exp",
            experiment_dir=experiment,
            framework="yolo",
            first_points=start,
        )
        experiment.mkdir()
        ours = StudySearch(
            space=space,
            metric=metric,
            mode=mode,
            sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=2),
            place=place,
            end_log=EndLog(experiment, max_epochs=2, budget=TimeBudget(None)),
        )
        rays = OptunaSearch(
            space=space,
            metric=metric,
            mode=mode,
            points_to_evaluate=start,
            sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=2),
        )
        for i in range(6):
            config = ours.suggest(f"t{i}")
            assert config == rays.suggest(f"t{i}"), (metric, i)
            rows = [{"training_iteration": epoch, "score": (i * 7 % 5) + epoch, "cost": float(i)} for epoch in (1, 2)]
            for searcher in (ours, rays):
                searcher.on_trial_result(f"t{i}", rows[0])
                searcher.on_trial_complete(f"t{i}", rows[1])
        assert ours.study.trials[0].params == start[0]
        assert [t.state for t in ours.study.trials] == [TrialState.COMPLETE] * 6


def test_a_resumed_searcher_reconnects_to_the_same_study(tmp_path):
    searcher, end_log = _searcher(tmp_path)
    for trial_id in ("a", "b"):
        searcher.suggest(trial_id)
        searcher.on_trial_result(trial_id, _row(1, 1.0))
    snapshot = tmp_path / "searcher-state.pkl"
    searcher.save(str(snapshot))  # Ray's snapshot: a and b running
    searcher.on_trial_complete("a", _row(3, 3.0))  # a ends after the snapshot ...
    searcher.suggest("orphan")  # ... and a trial is proposed that the snapshot never names: then a kill
    assert pickle.loads(snapshot.read_bytes()).keys() == {"study_trial_ids", "completed", "sampler"}

    again, _ = _searcher(tmp_path)  # a new driver, a new searcher on the same storage
    again.restore(str(snapshot))
    again.on_trial_result("a", _row(3, 3.0))  # Ray repeats a's last epoch: the study already has it
    again.on_trial_complete("a", _row(3, 3.0))
    again.on_trial_result("b", _row(1, 1.0))  # b continues from its checkpoint
    again.on_trial_result("b", _row(2, 2.0))
    again.on_trial_complete("b", _row(3, 4.0))
    again.suggest("c")
    again.on_trial_complete("c", _row(3, 5.0))

    study = optuna.load_study(study_name="exp", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    ids = [t.user_attrs["segtune_trial_id"] for t in study.trials]
    assert sorted(ids) == ["a", "b", "c", "orphan"]  # each once, nothing copied
    by_id = {t.user_attrs["segtune_trial_id"]: t for t in study.trials}
    assert by_id["a"].state == TrialState.COMPLETE and by_id["a"].intermediate_values == {1: 1.0, 3: 3.0}
    assert by_id["b"].state == TrialState.COMPLETE and by_id["b"].intermediate_values == {1: 1.0, 2: 2.0, 3: 4.0}
    assert by_id["orphan"].state == TrialState.FAIL and by_id["orphan"].user_attrs["end_reason"] == "abandoned"
    assert not (tmp_path / "trial_orphan").exists()  # it never ran: no trial directory appears
    assert not [t for t in study.trials if t.state == TrialState.RUNNING]


def test_a_new_study_runs_its_first_points_first_and_a_resumed_one_does_not_repeat_them(tmp_path):
    from segtune.runners.search.endings import EndLog, TimeBudget
    from segtune.runners.search.study import StudyPlace, StudySearch

    def searcher():
        place = StudyPlace(
            url=f"sqlite:///{tmp_path / 'optuna.db'}",
            name="exp",
            experiment_dir=tmp_path,
            framework="yolo",
            first_points=[{"x": 0.25}, {"x": 0.75}],
        )
        return StudySearch(
            space={"x": FloatDistribution(0, 1)},
            metric="score",
            mode="max",
            sampler=optuna.samplers.TPESampler(seed=0),
            place=place,
            end_log=EndLog(tmp_path, 3, TimeBudget(None)),
        )

    first = searcher()
    assert first.suggest("a") == {"x": 0.25}
    searcher()  # a resumed run opens the same study
    study = optuna.load_study(study_name="exp", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    assert [t.params.get("x") for t in study.trials] == [0.25, None]  # one waiting point, not three


# ---- end reasons, the time budget, the growing search ---------------------------------------------
def test_end_reasons(tmp_path):
    from segtune.runners.search.endings import EndLog, TimeBudget

    budget = TimeBudget(1e-9)
    end_log = EndLog(tmp_path, max_epochs=4, budget=budget)
    end_log.mark_asha("cut")
    decisions = {
        "crash": end_log.decide("crash", {"training_iteration": 2}, error=True),
        "nan": end_log.decide("nan", {"training_iteration": 3, "segtune/diverged": 1}),
        "cut": end_log.decide("cut", {"training_iteration": 1}),
        "all": end_log.decide("all", {"training_iteration": 4}),
        "early": end_log.decide("early", {"training_iteration": 2}),
    }
    assert decisions == {"crash": "failed", "nan": "diverged", "cut": "asha", "all": "finished", "early": "framework"}
    budget.stop_all(), budget.stop_all()  # the budget runs out
    assert budget.expired and end_log.decide("late", {"training_iteration": 2}) == "time_budget"
    assert end_log.decide("early", {"training_iteration": 2}) == "framework"  # the first decision stands
    # A later run of the experiment (after --resume) keeps what the earlier one recorded.
    assert EndLog(tmp_path, 4, TimeBudget(None)).decide("cut", {"training_iteration": 1}) == "asha"
    assert json.loads((tmp_path / "trial_late" / "end_reason.json").read_text()) == {
        "reason": "time_budget",
        "epochs": 2,
        "max_epochs": 4,
        "time_budget_s": 1e-9,
    }


def test_a_restored_time_budget_is_the_budget_of_the_resumed_run():
    """Ray puts the stopper of the first run back in place of the resumed run's one."""
    from segtune.runners.search.endings import TimeBudget

    spent = TimeBudget(1e-9)
    spent.stop_all(), spent.stop_all()
    restored = pickle.loads(pickle.dumps(spent))
    TimeBudget(None)  # the resumed run has no budget
    assert not restored.stop_all() and not restored.expired
    again = pickle.loads(pickle.dumps(spent))
    current = TimeBudget(1e-9)  # ... or a new one, which runs out
    current.stop_all()
    assert again.stop_all() and again.expired


def test_a_grown_search_goes_on_and_a_stopped_one_tells_its_searcher():
    from ray.tune.search import Searcher

    from segtune.runners.search.tuner import GrowableSearch

    class Recording(Searcher):
        def __init__(self):
            super().__init__(metric="m", mode="max")
            self.completed = []

        def suggest(self, trial_id):
            return {}

        def on_trial_complete(self, trial_id, result=None, error=False):
            self.completed.append((trial_id, result))

    finished_state = {"counter": 3, "total_samples": 3, "finished": True, "experiment": None}
    grown = GrowableSearch(Recording(), num_samples=5, max_concurrent=2)
    grown.set_state(dict(finished_state))
    assert grown.total_samples == 5 and not grown.is_finished()
    same = GrowableSearch(Recording(), num_samples=3, max_concurrent=2)
    same.set_state(dict(finished_state))
    assert same.is_finished()

    inner = Recording()
    search = GrowableSearch(inner, num_samples=5, max_concurrent=2)
    search.searcher.suggest("t1")
    search.on_trial_result("t1", {"training_iteration": 1, "m": 0.5})
    search.set_finished()  # what Ray calls when the time budget runs out, before it ends every trial
    assert inner.completed == [("t1", {"training_iteration": 1, "m": 0.5})]
    assert not search.searcher.live_trials and search.is_finished()


# ---- options with --resume ------------------------------------------------------------------------
def _resume_args(given: dict):
    from segtune.runners.command.request import parse_request

    argv = ["--framework", "yolo", "--name", "x", "--resume"]
    for key, value in given.items():
        argv += [f"--{key}", *([str(value)] if value is not None else [])]
    return parse_request(argv)


@pytest.mark.parametrize(
    "option, value, needle",
    [
        ("max-epochs", 5, "--max-epochs 5 differs from this experiment's 3"),
        ("max-failures", 2, "--max-failures 2 differs from this experiment's 0"),
        ("grace-period", 2, "--grace-period 2 differs"),
        ("metric", "bbox/AP", "--metric bbox/AP differs"),
        ("seed", 7, "--seed 7 differs"),
        ("num-samples", 3, "--num-samples 3 is fewer than this experiment's 4"),
        ("data", "somewhere", "--data cannot be given with --resume"),
        ("space", "s.yaml", "--space cannot be given with --resume"),
        ("warm-start", "old", "--warm-start cannot be given with --resume"),
        ("study-storage", "sqlite:///x.db", "--study-storage sqlite:///.*/x.db differs"),  # made absolute
    ],
)
def test_resume_refuses_what_it_cannot_honour(option, value, needle):
    from segtune.runners.plan.resume import check_resume_options

    with pytest.raises(ConfigError, match=needle) as error:
        check_resume_options(_resume_args({option: value}), _settings(space={"searched": {"x": {}}}))
    assert "\n" not in str(error.value)


def test_resume_grows_the_search_and_takes_a_new_time_budget():
    from segtune.runners.plan.resume import check_resume_options

    settings = _settings(space={"searched": {"x": {}}}, time_budget=60.0)
    same = check_resume_options(_resume_args({"max-epochs": 3, "seed": 0, "metric": "segm/AP"}), settings)
    assert same == settings  # the recorded values, typed again, are fine
    grown = check_resume_options(_resume_args({"num-samples": 9, "time-budget": 30}), settings)
    assert (grown.budget.num_samples, grown.budget.time_budget) == (9, 30.0)
    with pytest.raises(ConfigError, match="one fixed configuration"):
        check_resume_options(_resume_args({"num-samples": 9}), _settings(space={"searched": {}}))
    with pytest.raises(ConfigError, match="earlier segtune"):
        check_resume_options(_resume_args({"num-samples": 9}), settings, legacy=True)
