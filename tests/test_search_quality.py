"""The search's settings without training anything: TPE from the budget, the first trials (framework
defaults, --start-from), and the confirmation searcher and scheduler driven with fake trials."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import yaml

from segtune.core.errors import ConfigError
from segtune.core.record import CONFIRM_OF_KEY, CONFIRM_SEED_KEY, DIVERGED_KEY
from segtune.core.score import SCORE_KEY
from segtune.runners.plan.budget import plan_sampler
from segtune.runners.plan.first_trials import LEFT_OUT, default_point, fit_into, start_points
from segtune.runners.search.searcher import make_searcher
from segtune.search_spaces.membership import holds
from segtune.search_spaces.space import default_space_path, load_space, parse_space

SPACE = parse_space(
    {
        "optimizer": {"type": "categorical", "choices": ["SGD", "AdamW"]},
        "lr0": {"type": "float", "low": 1.0e-3, "high": 2.0e-2, "log": True},
        "lrf": {"type": "float", "low": 0.05, "high": 0.5},
        "batch": {"type": "int", "low": 8, "high": 32, "step": 8},
        "imgsz": 128,
        "seed": 0,
    },
    framework="yolo",
)


# ---- TPE settings ----------------------------------------------------------------------------------
@pytest.mark.parametrize("num_samples, startup", [(2, 1), (3, 2), (8, 2), (16, 4), (40, 10), (100, 25)])
def test_startup_trials_follow_the_budget_and_never_take_all_of_it(num_samples, startup):
    plan = plan_sampler(num_samples, start_points=1)
    assert plan.n_startup_trials == startup < num_samples
    assert plan.constant_liar and plan.multivariate
    assert f"until {startup} of {num_samples} trials have finished" in plan.describe()


def test_the_sampler_is_tpe_with_constant_liar_and_the_start_points_come_first(tmp_path):
    import optuna

    from segtune.runners.search.endings import EndLog, TimeBudget
    from segtune.runners.search.study import StudyPlace

    plan = plan_sampler(8)
    points = [{"optimizer": "SGD", "lr0": 0.01}]  # partial: Optuna samples lrf and batch
    place = StudyPlace(
        url=f"sqlite:///{tmp_path / 'optuna.db'}",
        name="exp",
        experiment_dir=tmp_path,
        framework="yolo",
        first_points=points,
    )
    searcher = make_searcher(
        SPACE, SCORE_KEY, "max", 0, study=place, plan=plan, end_log=EndLog(tmp_path, 10, TimeBudget(None))
    )
    sampler = searcher.study.sampler
    assert isinstance(sampler, optuna.samplers.TPESampler)
    assert sampler._n_startup_trials == 2 and sampler._constant_liar and sampler._multivariate
    first, second = searcher.suggest("t1"), searcher.suggest("t2")
    assert first["optimizer"] == "SGD" and first["lr0"] == 0.01 and 0.05 <= first["lrf"] <= 0.5
    assert second != first  # the queue is used once; then the sampler proposes


# ---- start points ----------------------------------------------------------------------------------
def test_defaults_are_fitted_into_the_space():
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    assert fit_into(FloatDistribution(0.05, 0.5), 0.01) == 0.05
    assert fit_into(IntDistribution(8, 32, step=8), 13) == 16 and fit_into(IntDistribution(8, 32, step=8), 64) == 32
    assert fit_into(CategoricalDistribution(["SGD", "AdamW"]), "auto") is LEFT_OUT
    assert fit_into(FloatDistribution(0.0, 1.0), "0.5") is LEFT_OUT
    anchors = CategoricalDistribution(["[[16], [32]]", "[[32], [64]]"])
    assert fit_into(anchors, [[32], [64]]) == "[[32], [64]]"
    assert fit_into(CategoricalDistribution([0, 1]), False) is LEFT_OUT  # False is no choice of [0, 1]
    point = default_point(SPACE, {"optimizer": "auto", "lr0": 0.01, "lrf": 0.01, "batch": 16, "momentum": 0.9})
    assert point == {"lr0": 0.01, "lrf": 0.05, "batch": 16}  # 'auto' is not offered: Optuna samples optimizer


@pytest.mark.parametrize("framework, backend", [("yolo", None), ("maskrcnn", "torchvision")])
def test_every_shipped_space_starts_from_the_framework_defaults(framework, backend):
    from segtune.trainers.registry import get_adapter

    adapter = get_adapter(framework, backend)
    for cpu in (True, False):
        space = load_space(default_space_path(framework, cpu))
        point = default_point(space, adapter.default_params(space.searched))
        assert len(point) >= len(space.searched) - 1, (space.source, point)
        for key, value in point.items():
            assert holds(space.searched[key], value), (key, value)
        adapter.check_params({**{k: v for k, v in space.fixed.items()}, **point})


def test_yolo_defaults_are_what_ultralytics_optimizer_auto_would_pick():
    """'auto' is refused in a search; the first trial gets what it picks for the run's length."""
    from segtune.trainers.base import TrainingShape
    from segtune.trainers.registry import get_adapter

    adapter = get_adapter("yolo", None)
    keys = ["optimizer", "lr0", "momentum", "lrf"]
    short = adapter.default_params(keys, TrainingShape(64, 3, 30, {"batch": 8, "nbs": 8}))  # 240 steps
    assert short == {"optimizer": "AdamW", "lr0": round(0.01 / 7, 6), "momentum": 0.9, "lrf": 0.01}
    # 10,000 steps are counted at max(batch, nbs) images: 20,000 images x 100 epochs / 64 is long
    long = adapter.default_params(keys, TrainingShape(20_000, 80, 100, {"batch": 16}))
    assert long["optimizer"] == "SGD" and long["lr0"] == 0.01 and long["momentum"] == 0.9
    assert adapter.default_params(keys)["optimizer"] == "SGD"  # length unknown


def test_start_from_an_exported_config(tmp_path):
    exported = tmp_path / "config.yaml"
    exported.write_text(
        yaml.safe_dump(
            {
                "framework": "yolo",
                "model": "yolo11n-seg.yaml",
                "params": {
                    "optimizer": "AdamW",
                    "lr0": 0.5,
                    "lrf": 0.1,
                    "batch": 16,
                    "imgsz": 256,
                    "seed": 4,
                    "mosaic": 0.0,
                },
            }
        )
    )
    warnings: list[str] = []
    points = start_points(SPACE, {"lr0": 0.01}, exported, "yolo", "seed", warnings.append)
    assert [label for label, _ in points] == ["the framework's defaults", f"--start-from {exported}"]
    assert points[1][1] == {"optimizer": "AdamW", "lr0": 0.02, "lrf": 0.1, "batch": 16}
    assert len(warnings) == 3 and any("lr0=0.5 is outside" in w for w in warnings)
    assert any("imgsz is fixed to 128" in w for w in warnings) and any("mosaic is not in" in w for w in warnings)
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump({"params": {"mosaic": 0.5}}))
    with pytest.raises(ConfigError, match="none of the searched keys"):
        start_points(SPACE, {}, other, "yolo", "seed", warnings.append)
    other.write_text(yaml.safe_dump({"framework": "maskrcnn", "params": {"SEED": 1}}))
    with pytest.raises(ConfigError, match="is a maskrcnn config"):
        start_points(SPACE, {}, other, "yolo", "seed", warnings.append)


# ---- the confirmation searcher and scheduler -------------------------------------------------------
def _confirming(directory, top_k: int = 2, seeds: int = 2, samples: int = 4, asha_stopped: tuple[str, ...] = ()):
    """A confirming searcher around the experiment's study searcher (the study lives in `directory`:
    a second one made there reconnects to it, as a resumed search does)."""
    from segtune.runners.plan.confirm import ConfirmPlan
    from segtune.runners.search.confirming import ConfirmingSearcher
    from segtune.runners.search.endings import EndLog, TimeBudget
    from segtune.runners.search.study import StudyPlace

    end_log = EndLog(directory, 10, TimeBudget(None))
    for trial_id in asha_stopped:
        end_log.mark_asha(trial_id)
    place = StudyPlace(
        url=f"sqlite:///{directory / 'optuna.db'}", name="exp", experiment_dir=directory, framework="yolo"
    )
    inner = make_searcher(SPACE, SCORE_KEY, "max", 0, study=place, end_log=end_log, plan=plan_sampler(samples))
    return ConfirmingSearcher(inner, samples, ConfirmPlan(top_k, seeds, "seed", base_seed=0))


def _finish(searcher, trial_id: str, score: float | None, epochs: int = 10, diverged: bool = False) -> None:
    searcher.on_trial_result(trial_id, {SCORE_KEY: score or 0.0, "training_iteration": 1})
    result = None if score is None else {SCORE_KEY: score, "training_iteration": epochs, DIVERGED_KEY: int(diverged)}
    searcher.on_trial_complete(trial_id, result=result, error=score is None)


def test_confirmation_follows_the_search_with_new_seeds_and_optuna_never_hears_of_it(tmp_path):
    from ray.tune.search import Searcher

    searcher = _confirming(tmp_path, asha_stopped=("s3",))
    configs = {f"s{i}": searcher.suggest(f"s{i}") for i in range(4)}
    assert all(configs.values()) and searcher.suggest("c0") is None  # the search is still running
    for trial_id, score in (("s0", 5.0), ("s1", 20.0), ("s2", None), ("s3", 12.0)):  # s2 failed
        assert searcher.suggest("wait") is None
        _finish(searcher, trial_id, score, epochs=3 if trial_id == "s3" else 10)
    saved = tmp_path / "searcher.pkl"
    searcher.save(str(saved))
    confirmations = [searcher.suggest(f"c{i}") for i in range(4)]
    assert [(c[CONFIRM_OF_KEY], c[CONFIRM_SEED_KEY], c["seed"]) for c in confirmations] == [
        ("s1", 1, 1),
        ("s1", 2, 2),
        ("s3", 1, 1),
        ("s3", 2, 2),
    ]
    for config in confirmations:
        original = configs[config[CONFIRM_OF_KEY]]
        assert {k: v for k, v in config.items() if k in original} == original  # the same hyperparameters
    assert searcher.suggest("c4") == Searcher.FINISHED
    for i in range(4):
        _finish(searcher, f"c{i}", 1.0)
    study = searcher.searcher.study
    assert len(study.trials) == 4  # only the search trials: confirmations are re-measurements
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE", "FAIL", "PRUNED"]

    restored = _confirming(tmp_path)
    restored.restore(str(saved))  # state before any confirmation was proposed
    assert [restored.suggest(f"r{i}")[CONFIRM_OF_KEY] for i in range(4)] == ["s1", "s1", "s3", "s3"]
    assert len(restored.searcher.study.trials) == 4


def test_confirmation_state_survives_ray_s_own_snapshot(tmp_path):
    """Ray saves a searcher wrapper by `get_state` and the wrapped searcher by its own save_to_dir."""
    from ray.tune.search import ConcurrencyLimiter, SearchGenerator

    generator = SearchGenerator(
        ConcurrencyLimiter(_confirming(tmp_path, top_k=1, seeds=2, samples=2), max_concurrent=2)
    )
    first = generator.searcher.suggest("a")
    generator.searcher.suggest("b")
    _finish(generator.searcher, "a", 3.0)
    generator.save_to_dir(str(tmp_path), session_str="x")
    _finish(generator.searcher, "b", 1.0)

    resumed = SearchGenerator(ConcurrencyLimiter(_confirming(tmp_path, top_k=1, seeds=2, samples=2), max_concurrent=2))
    resumed.restore_from_dir(str(tmp_path))
    confirming = resumed.searcher.searcher
    assert list(confirming.suggested) == ["a", "b"] and confirming.scores == {"a": 3.0}
    assert resumed.searcher.suggest("c") is None  # "b" is unfinished in the snapshot: it resumes first
    _finish(resumed.searcher, "b", 1.0)
    config = resumed.searcher.suggest("c")
    assert config[CONFIRM_OF_KEY] == "a" and {k: config[k] for k in first} == first


def test_confirmation_picks_distinct_configurations_and_skips_diverged_trials(tmp_path):
    searcher = _confirming(tmp_path, top_k=2, seeds=1, samples=3)
    for trial_id in ("a", "b", "c"):
        searcher.suggest(trial_id)
    searcher.suggested["b"] = dict(searcher.suggested["a"])  # the same point proposed twice
    _finish(searcher, "a", 9.0)
    _finish(searcher, "b", 10.0)
    _finish(searcher, "c", 50.0, diverged=True)
    assert [c[CONFIRM_OF_KEY] for c in searcher.confirmation_configs()] == ["b"]


def test_asha_never_stops_a_confirmation_trial():
    from ray.tune.schedulers import TrialScheduler

    from segtune.runners.search.confirming import ConfirmationAwareASHA

    scheduler = ConfirmationAwareASHA(time_attr="training_iteration", max_t=9, grace_period=1, reduction_factor=3)
    scheduler.set_search_properties(SCORE_KEY, "max")
    search = [SimpleNamespace(trial_id=f"s{i}", config={"lr0": 0.01}) for i in range(3)]
    confirm = SimpleNamespace(trial_id="c", config={"lr0": 0.01, CONFIRM_OF_KEY: "s0", CONFIRM_SEED_KEY: 1})
    for trial in [*search, confirm]:
        scheduler.on_trial_add(None, trial)
    for i, trial in enumerate(search):
        scheduler.on_trial_result(None, trial, {"training_iteration": 1, SCORE_KEY: 10.0 + i})
    early, last = {"training_iteration": 1, SCORE_KEY: 0.0}, {"training_iteration": 9, SCORE_KEY: 0.0}
    assert scheduler.on_trial_result(None, confirm, early) == TrialScheduler.CONTINUE
    assert scheduler.on_trial_result(None, confirm, last) == TrialScheduler.STOP  # at max_t, as ASHA does
    low = SimpleNamespace(trial_id="s9", config={"lr0": 0.01})
    scheduler.on_trial_add(None, low)
    assert scheduler.on_trial_result(None, low, {"training_iteration": 1, SCORE_KEY: 0.0}) == TrialScheduler.STOP
    scheduler.on_trial_complete(None, confirm, {"training_iteration": 9, SCORE_KEY: 0.0})
    with pytest.raises(KeyError):  # ASHA has forgotten it already: removing it again finds nothing
        scheduler.on_trial_remove(None, confirm)


def test_default_confirmation_is_a_quarter_of_the_search_at_most():
    from segtune.runners.plan.confirm import ConfirmPlan, confirmation_seeds, default_confirm_top

    assert [default_confirm_top(n, False) for n in (2, 4, 8, 16)] == [0, 1, 2, 2]
    assert [default_confirm_top(n, True) for n in (8, 16, 32)] == [2, 3, 3]
    assert confirmation_seeds(ConfirmPlan(1, 3, "seed", 0), original_seed=2) == [1, 3, 4]


def test_cli_refuses_bad_confirmation_options():
    from segtune.runners.command.request import parse_request

    for argv, text in (
        (["--confirm-top", "-1"], "--confirm-top"),
        (["--confirm-seeds", "0"], "--confirm-seeds"),
        (["--config", "c.yaml", "--start-from", "s.yaml"], "--start-from"),
    ):
        with pytest.raises(ConfigError, match=text):
            parse_request(["--framework", "yolo", *argv])


@pytest.mark.parametrize(
    "body, words",
    [
        (None, ["does not exist"]),
        ("- 1\n- 2\n", ["mapping of parameter values"]),
        ("framework: maskrcnn\nparams: {SEED: 1}\n", ["maskrcnn config"]),
    ],
)
def test_a_bad_start_from_file_stops_the_run_before_anything_is_written(capsys, tmp_path, body, words):
    from segtune.runners.command import main

    start = tmp_path / "start.yaml"
    if body is not None:
        start.write_text(body)
    status = main(
        ["--framework", "yolo", "--storage", str(tmp_path / "runs"), "--name", "x", "--start-from", str(start)]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and err[0].startswith("tune.py: error:"), err
    assert all(word in err[0] for word in words), err
    assert not (tmp_path / "runs").exists()


def test_a_grown_search_confirms_its_new_best_without_repeating_confirmations(tmp_path):
    searcher = _confirming(tmp_path, top_k=1, seeds=1, samples=1)
    assert searcher.planned_trials() == 2
    searcher.suggest("a")
    _finish(searcher, "a", 5.0)
    assert searcher.suggest("c1")[CONFIRM_OF_KEY] == "a"
    state = searcher.get_state()
    grown = _confirming(tmp_path, top_k=1, seeds=1, samples=2)  # resumed with --num-samples 2
    grown.searcher = searcher.searcher
    grown.set_state(state)
    assert grown.planned_trials() == 4  # the Tuner's total grows with it (runners/search/tuner.py)
    assert grown.search_samples == 2 and grown.suggest("b") is not None
    _finish(grown, "b", 9.0)
    assert grown.suggest("c2")[CONFIRM_OF_KEY] == "b"
    assert grown.suggest("c3") == "FINISHED"
