"""A search over several frameworks, and several objectives, piece by piece: the conditional space
(search_spaces/conditional.py) sampled by Optuna, by Ray's OptunaSearch and by segtune's StudySearch,
the record and its round trip, reading a trial's choice back (core/choice.py), the command line, ASHA
per framework, and the ranking by Pareto rank."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import optuna
import pytest

from segtune.analysis.pareto import rank_by_objectives
from segtune.analysis.ranking import rank_trials
from segtune.analysis.trials import TrialSummary
from segtune.core.choice import FRAMEWORK_KEY, for_trial, model_key, param_key, trial_framework
from segtune.core.errors import ConfigError
from segtune.core.record import PreparedDataset, RunSettings
from segtune.core.sections import Budget, FrameworkEntry, Objective
from segtune.runners.command.request import parse_request
from segtune.runners.plan.frameworks import framework_names, per_framework, resolve_frameworks
from segtune.runners.plan.objectives import parse_objectives
from segtune.runners.request import FrameworkRequest, ObjectiveRequest
from segtune.runners.search.schedulers import FrameworkASHA
from segtune.search_spaces.conditional import ConditionalSpace, FrameworkBranch, conditional_space
from segtune.search_spaces.membership import holds
from segtune.search_spaces.space import SPACES_DIR, load_space, parse_space

YOLO_MODELS = ("yolo11n-seg.yaml", "yolo11s-seg.yaml")
MASKRCNN_MODELS = ("maskrcnn_resnet18_fpn",)


@pytest.fixture
def space() -> ConditionalSpace:
    """The CPU spaces of both frameworks, as a two-framework search on a CPU gets them."""
    return ConditionalSpace(
        {
            "yolo": FrameworkBranch(YOLO_MODELS, load_space(SPACES_DIR / "yolo_cpu.yaml").with_fixed({"seed": 0})),
            "maskrcnn": FrameworkBranch(
                MASKRCNN_MODELS, load_space(SPACES_DIR / "maskrcnn_cpu.yaml").with_fixed({"SEED": 0})
            ),
        }
    )


def _own_keys(space: ConditionalSpace, framework: str) -> set[str]:
    branch = space.branches[framework]
    return {param_key(framework, k) for k in branch.space.keys} | {FRAMEWORK_KEY, model_key(framework)}


def test_each_trial_holds_its_own_frameworks_keys_only_and_both_frameworks_are_sampled(space):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=3))
    seen = set()
    for _ in range(12):
        trial = study.ask()
        fixed = space(trial)
        framework = trial.params[FRAMEWORK_KEY]
        seen.add(framework)
        branch = space.branches[framework]
        config = {**trial.params, **fixed}
        assert set(config) == _own_keys(space, framework)  # nothing of the other framework
        assert set(trial.params) == {FRAMEWORK_KEY, model_key(framework)} | {
            param_key(framework, k) for k in branch.space.searched
        }
        assert config[model_key(framework)] in branch.models
        assert fixed == {param_key(framework, k): v for k, v in branch.space.fixed.items()}
        for key, distribution in branch.space.searched.items():  # inside the framework's own ranges
            value = trial.params[param_key(framework, key)]
            assert holds(distribution, value), (key, value)
        study.tell(trial, 1.0)
    assert seen == {"yolo", "maskrcnn"}


def test_tpe_with_an_enqueued_framework_and_rays_optuna_search_keep_configs_flat(space):
    """Ray's OptunaSearch turns 'a/b' keys into nested dicts: ':' keeps a trial's config flat."""
    from ray.tune.search.optuna import OptunaSearch

    with pytest.warns(optuna.exceptions.ExperimentalWarning):  # `group`
        study_sampler = optuna.samplers.TPESampler(seed=0, n_startup_trials=2, multivariate=True, group=True)
    searcher = OptunaSearch(space=space, metric="segm/AP", mode="max", sampler=study_sampler)
    searcher._ot_study.enqueue_trial({FRAMEWORK_KEY: "maskrcnn"})
    searcher._ot_study.enqueue_trial({FRAMEWORK_KEY: "yolo"})
    frameworks = []
    for i in range(6):
        config = searcher.suggest(f"t{i}")
        framework = config[FRAMEWORK_KEY]
        frameworks.append(framework)
        assert set(config) == _own_keys(space, framework)
        assert all(not isinstance(v, dict) for v in config.values())
        searcher.on_trial_complete(f"t{i}", {"segm/AP": float(i), "training_iteration": 1})
    assert frameworks[:2] == ["maskrcnn", "yolo"]


def _grouped_tpe() -> optuna.samplers.TPESampler:
    with pytest.warns(optuna.exceptions.ExperimentalWarning):  # `group`
        return optuna.samplers.TPESampler(seed=0, n_startup_trials=2, multivariate=True, group=True)


def test_segtune_s_study_search_proposes_what_rays_optuna_search_would(space, tmp_path):
    """StudySearch asks Optuna itself (Ray's OptunaSearch keeps its study private): with the same
    sampler, seed, start points and results, both propose the same configurations."""
    from ray.tune.search.optuna import OptunaSearch

    from segtune.runners.search.endings import EndLog, TimeBudget
    from segtune.runners.search.study import StudyPlace, StudySearch

    points = [{FRAMEWORK_KEY: "maskrcnn"}, {FRAMEWORK_KEY: "yolo"}]
    rays = OptunaSearch(space=space, metric="segm/AP", mode="max", sampler=_grouped_tpe(), points_to_evaluate=points)
    place = StudyPlace(
        url=f"sqlite:///{tmp_path / 'optuna.db'}",
        name="exp",
        experiment_dir=tmp_path,
        framework="yolo,maskrcnn",
        first_points=points,
    )
    ours = StudySearch(
        space=space,
        metric="segm/AP",
        mode="max",
        sampler=_grouped_tpe(),
        place=place,
        end_log=EndLog(tmp_path, max_epochs=1, budget=TimeBudget(None)),
    )
    frameworks = []
    for i in range(8):
        config = ours.suggest(f"t{i}")
        assert config == rays.suggest(f"t{i}")
        frameworks.append(config[FRAMEWORK_KEY])
        result = {"segm/AP": float(i % 3), "training_iteration": 1}
        ours.on_trial_complete(f"t{i}", result)
        rays.on_trial_complete(f"t{i}", result)
    assert frameworks[:2] == ["maskrcnn", "yolo"] and len(ours.study.trials) == 8


def test_the_union_lists_every_branch_and_survives_the_record(space):
    union = space.union()
    assert list(union.searched)[:3] == [FRAMEWORK_KEY, model_key("yolo"), model_key("maskrcnn")]
    assert param_key("yolo", "lr0") in union.searched and param_key("maskrcnn", "SOLVER.BASE_LR") in union.searched
    assert union.fixed[param_key("yolo", "imgsz")] == 128 and union.fixed[param_key("maskrcnn", "SEED")] == 0
    assert space.fixed == {}  # a framework's fixed values come with its branch, never to every trial
    record = [
        FrameworkEntry(f, models=b.models, space=json.loads(json.dumps(b.space.to_dict())))
        for f, b in space.branches.items()
    ]
    rebuilt = conditional_space(record)
    assert rebuilt.union().to_dict() == union.to_dict()


def test_record_round_trip_and_what_a_trial_chose(tmp_path, space):
    dataset = PreparedDataset(
        name="d",
        content_hash="h",
        train_json=tmp_path / "t.json",
        train_images=tmp_path,
        val_json=tmp_path / "v.json",
        val_images=tmp_path,
        category_ids=(1,),
        category_names=("a",),
    )
    frameworks = (
        FrameworkEntry("yolo", "", YOLO_MODELS, None, space.branches["yolo"].space.to_dict()),
        FrameworkEntry(
            "maskrcnn", "torchvision", MASKRCNN_MODELS, "DEFAULT", space.branches["maskrcnn"].space.to_dict()
        ),
    )
    objectives = (("segm/AP", "max"), ("cost/latency_ms", "min"))
    settings = RunSettings(
        dataset, frameworks, space.union().to_dict(), Objective("segm/AP", "max", objectives), Budget(3, num_samples=4)
    )
    settings.save(tmp_path)
    loaded = RunSettings.load(tmp_path)
    assert loaded == settings and loaded.frameworks == frameworks and loaded.objective.objectives == objectives
    assert loaded.is_multi and loaded.framework_names == ("yolo", "maskrcnn")

    config = {
        FRAMEWORK_KEY: "maskrcnn",
        model_key("maskrcnn"): "maskrcnn_resnet18_fpn",
        param_key("maskrcnn", "SOLVER.BASE_LR"): 0.01,
        param_key("maskrcnn", "SEED"): 0,
    }
    single, params = for_trial(loaded, config)
    chosen = single.sole_framework
    assert (chosen.name, chosen.backend, chosen.model, chosen.weights) == (
        "maskrcnn",
        "torchvision",
        "maskrcnn_resnet18_fpn",
        "DEFAULT",
    )
    assert params == {"SOLVER.BASE_LR": 0.01, "SEED": 0} and not single.is_multi
    assert single.space == frameworks[1].space
    assert trial_framework(loaded, config) == ("maskrcnn", "maskrcnn_resnet18_fpn")
    with pytest.raises(KeyError):
        for_trial(loaded, {FRAMEWORK_KEY: "unknown"})


def test_a_single_framework_record_of_before_loads_unchanged(tmp_path):
    old = {
        "framework": "yolo",
        "backend": "",
        "model": "yolo11n-seg.yaml",
        "weights": None,
        "metric": "segm/AP",
        "mode": "max",
        "max_epochs": 3,
        "gpus_per_trial": 0,
        "cpus_per_trial": 1,
        "workers": 0,
        "max_detections": 100,
        "num_samples": 4,
        "grace_period": 1,
        "space": {"searched": {}, "fixed": {}},
        "dataset": {
            "name": "d",
            "content_hash": "h",
            "train_json": "t.json",
            "train_images": "t",
            "val_json": "v.json",
            "val_images": "v",
            "category_ids": [1],
            "category_names": ["a"],
        },
    }
    (tmp_path / "segtune.json").write_text(json.dumps(old))  # written before several frameworks existed
    loaded = RunSettings.load(tmp_path)
    assert not loaded.is_multi and loaded.framework_names == ("yolo",) and loaded.objective.objectives == ()
    assert for_trial(loaded, {"lr0": 0.01}) == (loaded, {"lr0": 0.01})


def _args(*argv: str):
    return parse_request(["--framework", *argv])


def test_command_line_names_several_frameworks_and_per_framework_values():
    assert framework_names("yolo,maskrcnn, yolo") == ["yolo", "maskrcnn"] and framework_names("all") == ["all"]
    assert resolve_frameworks(["all"]) == ["yolo", "maskrcnn"]  # both libraries are installed here
    with pytest.raises(ConfigError, match="unknown framework detectron"):
        framework_names("yolo,detectron")
    request = _args(
        "yolo,maskrcnn", "--model", "yolo=yolo11n-seg.yaml,yolo11s-seg.yaml", "maskrcnn=maskrcnn_resnet18_fpn"
    )
    assert request.names == ("yolo", "maskrcnn") and request.several
    assert {f.name: f.models for f in request.frameworks} == {
        "yolo": ("yolo11n-seg.yaml", "yolo11s-seg.yaml"),
        "maskrcnn": ("maskrcnn_resnet18_fpn",),
    }
    assert per_framework(["yolo=a,b", "maskrcnn=c"], "--model", ["yolo", "maskrcnn"]) == {
        "yolo": "a,b",
        "maskrcnn": "c",
    }
    with pytest.raises(ConfigError, match="FRAMEWORK=VALUE"):
        per_framework(["yolo11n-seg.yaml"], "--model", ["yolo", "maskrcnn"])
    with pytest.raises(ConfigError, match="not one of this search's frameworks"):
        per_framework(["detectron2=x"], "--weights", ["yolo", "maskrcnn"])
    single = _args("yolo", "--model", "yolo=yolo11s-seg.yaml", "--weights", "w.pt")
    assert single.frameworks == (FrameworkRequest("yolo", "auto", ("yolo11s-seg.yaml",), "w.pt", None),)
    assert not single.several
    with pytest.raises(ConfigError, match="model choices are for a search over several frameworks"):
        _args("yolo", "--model", "yolo11n-seg.yaml,yolo11s-seg.yaml")


def test_objectives_parse_and_exclude_asha_options():
    assert parse_objectives("segm/AP:max,cost/latency_ms:min") == [("segm/AP", "max"), ("cost/latency_ms", "min")]
    assert parse_objectives("bbox/AP, cost/params_m") == [("bbox/AP", "max"), ("cost/params_m", "min")]
    for bad, message in [
        ("segm/AP:up", "mode after ':'"),
        ("segm/AP,segm/AP", "twice"),
        ("yolo/val/seg_loss:min", "not a metric every trial reports"),
        ("segm/AP,,", "empty item"),
    ]:
        with pytest.raises(ConfigError, match=message):
            parse_objectives(bad)
    request = _args("yolo", "--objective", "segm/AP:max,cost/latency_ms:min")
    assert request.objective == ObjectiveRequest("segm/AP", "max", (("segm/AP", "max"), ("cost/latency_ms", "min")))
    with pytest.raises(ConfigError, match="ASHA, which does not apply"):
        _args("yolo", "--objective", "segm/AP,cost/fps", "--grace-period", "2")


def test_asha_per_framework_judges_a_trial_against_its_own_framework_only():
    """At the first rung a YOLO trial with AP 0 (a slow start) faces Mask R-CNN trials scoring 30:
    one shared ASHA stops it; ASHA per framework compares it with the other YOLO trial only."""
    from ray.tune.schedulers import ASHAScheduler, TrialScheduler

    def make():
        return ASHAScheduler(time_attr="training_iteration", max_t=9, grace_period=1, reduction_factor=3)

    trials = [
        SimpleNamespace(trial_id=f"{fw}{i}", config={FRAMEWORK_KEY: fw})
        for fw, i in [("maskrcnn", 1), ("maskrcnn", 2), ("yolo", 1), ("yolo", 2)]
    ]
    scores = {"maskrcnn1": 30.0, "maskrcnn2": 31.0, "yolo1": 0.0, "yolo2": 0.5}
    decisions = {}
    for name, scheduler in (("shared", make()), ("per framework", FrameworkASHA(make))):
        scheduler.set_search_properties("segm/AP", "max")
        for trial in trials:
            scheduler.on_trial_add(None, trial)
        decisions[name] = {
            t.trial_id: scheduler.on_trial_result(None, t, {"training_iteration": 1, "segm/AP": scores[t.trial_id]})
            for t in trials
        }
    assert decisions["shared"]["yolo2"] == TrialScheduler.STOP
    assert decisions["per framework"]["yolo2"] == TrialScheduler.CONTINUE


def _trial(trial_id: str, ap: float | None, latency: float | None, framework: str = "yolo") -> TrialSummary:
    trial = TrialSummary(
        trial_id=trial_id,
        path=Path(trial_id),
        status="finished",
        detail="",
        best_value=ap,
        best_epoch=1 if ap is not None else None,
        framework=framework,
    )
    if latency is not None:
        trial.costs = {"cost/latency_ms": latency}
    return trial


def test_a_multi_objective_search_ranks_by_pareto_rank_then_the_first_objective():
    trials = [
        _trial("a", 50, 30),
        _trial("b", 45, 10),
        _trial("c", 40, 20),
        _trial("d", 60, 40),
        _trial("e", 55, None),
        _trial("f", None, 5),
        _trial("g", 30, 5),
    ]
    rank_trials(trials, "max")
    assert [t.trial_id for t in trials][:4] == ["d", "e", "a", "b"]  # by AP alone
    rank_by_objectives(trials, [("segm/AP", "max"), ("cost/latency_ms", "min")], "segm/AP")
    # front 1: d (best AP), a, b, g (fastest); then c (beaten by b on both); then e and f without both values
    assert [(t.trial_id, t.pareto_rank) for t in trials] == [
        ("d", 1),
        ("a", 1),
        ("b", 1),
        ("g", 1),
        ("c", 2),
        ("e", None),
        ("f", None),
    ]
    assert [t.rank for t in trials] == list(range(1, 8))


def test_parse_space_keys_never_collide_across_frameworks():
    """Both frameworks may call a parameter `seed`: prefixed, they are two study parameters."""
    a = parse_space({"seed": {"type": "int", "low": 0, "high": 3}}, framework="yolo")
    b = parse_space({"seed": {"type": "categorical", "choices": [1, 2]}}, framework="maskrcnn")
    space = ConditionalSpace({"yolo": FrameworkBranch(("m",), a), "maskrcnn": FrameworkBranch(("n",), b)})
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(8):
        trial = study.ask()
        space(trial)
        study.tell(trial, 0.0)
    assert {k for t in study.trials for k in t.params} >= {"yolo:seed", "maskrcnn:seed"}


def test_the_comparison_shows_each_framework_s_confirmed_mean_where_confirmation_ran():
    from segtune.analysis.compare import comparison_rows

    trials = [_trial("y", 40, 5), _trial("m", 45, 50, framework="maskrcnn"), _trial("y2", 20, 6)]
    for trial_id, ap, seed in (("c1", 30.0, 1), ("c2", 34.0, 2)):  # trial y's configuration, two new seeds
        confirmation = _trial(trial_id, ap, 5)
        confirmation.confirm_of, confirmation.confirm_seed = "y", seed
        trials.append(confirmation)
    rank_trials(trials, "max")
    rows = dict(comparison_rows(trials, "segm/AP", "max"))
    frameworks = [c for c in dict.fromkeys(t.framework for t in trials)]
    confirmed = dict(zip(frameworks, rows["segm/AP confirmed (best configuration, new seeds)"]))
    assert confirmed["yolo"].startswith("32.00 +- 2.83 over 2 seeds (y)")
    assert confirmed["maskrcnn"] == "not confirmed"
