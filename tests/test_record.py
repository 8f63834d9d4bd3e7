"""The experiment record (core/record.py, core/sections.py) and its one migration (core/migrate.py):
older records load into the current sections, a saved record round-trips, a record newer than this
code is refused in one line, and every section checks its values when it is made."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from segtune.analysis.trials import load_experiment
from segtune.core.errors import ConfigError, ExperimentError
from segtune.core.migrate import SCHEMA_VERSION, migrate
from segtune.core.record import SETTINGS_FILE, PreparedDataset, RunSettings
from segtune.core.sections import (
    Budget,
    Confirmation,
    FrameworkEntry,
    Objective,
    Resources,
    Schedule,
    Study,
)
from segtune.runners.command import main

SPACE = {
    "source": "spaces/yolo.yaml",
    "searched": {
        "lr0": {"name": "FloatDistribution", "attributes": {"low": 0.001, "high": 0.1, "log": True, "step": None}}
    },
    "fixed": {"seed": 0},
}


def _dataset(root: Path) -> dict:
    return {
        "name": "demo",
        "content_hash": "0" * 64,
        "train_json": str(root / "t.json"),
        "train_images": str(root / "t"),
        "val_json": str(root / "v.json"),
        "val_images": str(root / "v"),
        "category_ids": [1],
        "category_names": ["shape"],
        "layouts": {},
        "num_train_images": 8,
        "num_val_images": 2,
        "warnings": [],
        "max_objects_per_image": 3,
        "train_images_source": None,
        "val_images_source": None,
    }


def _version_1(root: Path) -> dict:
    """A flat record as segtune wrote it before schema versions (no `schema_version` key)."""
    return {
        "framework": "yolo",
        "backend": "",
        "dataset": _dataset(root),
        "metric": "segm/AP",
        "mode": "max",
        "max_epochs": 12,
        "model": "yolo11n-seg.yaml",
        "weights": "yolo11n-seg.pt",
        "gpus_per_trial": 0.5,
        "cpus_per_trial": 4.0,
        "workers": 3,
        "max_detections": 300,
        "seed": 7,
        "space": SPACE,
        "experiment_dir": str(root / "exp"),
        "options": {},
        "num_samples": 16,
        "grace_period": 2,
        "reduction_factor": 2.0,
        "max_concurrent": 2,
        "max_failures": 1,
        "time_budget": 600.0,
        "sampler": "random",
        "scheduler": "none",
        "budget_epochs": 90,
        "confirm_top": 2,
        "confirm_seeds": 3,
        "study_storage": "sqlite:////db/optuna.db",
        "study_name": "s",
        "warm_start": ["/runs/old"],
        "frameworks": {},
        "objectives": [],
    }


def _write(experiment: Path, data: dict) -> Path:
    experiment.mkdir(parents=True, exist_ok=True)
    (experiment / SETTINGS_FILE).write_text(json.dumps(data))
    return experiment


def test_a_version_1_record_loads_into_the_sections(tmp_path):
    record = RunSettings.load(_write(tmp_path / "exp", _version_1(tmp_path)))
    assert record.frameworks == (FrameworkEntry("yolo", "", ("yolo11n-seg.yaml",), "yolo11n-seg.pt", SPACE),)
    assert record.space == SPACE and not record.is_multi and record.framework_names == ("yolo",)
    assert record.data.val_json == tmp_path / "v.json" and record.data.max_objects_per_image == 3
    assert record.objective == Objective("segm/AP", "max")
    assert record.budget == Budget(max_epochs=12, num_samples=16, budget_epochs=90, time_budget=600.0)
    assert record.schedule == Schedule("random", "none", grace_period=2, reduction_factor=2.0)
    assert record.resources == Resources(0.5, 4.0, workers=3, max_concurrent=2, max_failures=1, max_detections=300)
    assert record.study == Study("sqlite:////db/optuna.db", "s", ("/runs/old",))
    assert record.confirmation == Confirmation(top=2, seeds=3)
    assert (record.seed, record.experiment_dir) == (7, str(tmp_path / "exp"))
    assert record.study_url(tmp_path) == "sqlite:////db/optuna.db" and record.study_name_at(tmp_path) == "s"


def test_a_legacy_record_loads_with_every_old_shape_migrated(tmp_path):
    """The oldest shapes: the space as a file path, iters_per_epoch on its own, the dataset's
    yolo_yaml, and no budget, schedule, study, confirmation, frameworks or objectives."""
    legacy = {
        key: value
        for key, value in _version_1(tmp_path).items()
        if key
        in (
            "framework",
            "backend",
            "dataset",
            "metric",
            "mode",
            "max_epochs",
            "model",
            "weights",
            "gpus_per_trial",
            "cpus_per_trial",
            "workers",
            "max_detections",
            "seed",
        )
    }
    legacy.update(
        space="spaces/maskrcnn.yaml",
        iters_per_epoch=20,
        framework="maskrcnn",
        backend="torchvision",
        model="maskrcnn_resnet18_fpn",
        weights=None,
    )
    legacy["dataset"] = {**legacy["dataset"], "yolo_yaml": str(tmp_path / "data.yaml")}
    del legacy["dataset"]["layouts"]
    record = RunSettings.load(_write(tmp_path / "old", legacy))
    assert record.space == {"source": "spaces/maskrcnn.yaml"} and record.frameworks[0].space == record.space
    assert record.options == {"iters_per_epoch": 20}
    assert record.data.layout("ultralytics") == tmp_path / "data.yaml"
    assert record.sole_framework == FrameworkEntry(
        "maskrcnn", "torchvision", ("maskrcnn_resnet18_fpn",), None, record.space
    )
    # Recorded before segtune kept the budget: marked as such, resumed with Ray's own restore.
    assert record.budget == Budget(12, num_samples=None) and not record.budget.recorded
    assert record.schedule == Schedule("tpe", "asha", grace_period=None, reduction_factor=3.0)
    assert (record.resources.max_concurrent, record.resources.max_failures) == (1, 0)
    assert record.study == Study() and record.confirmation == Confirmation()
    assert record.study_url(tmp_path / "old") == f"sqlite:///{(tmp_path / 'old' / 'optuna.db').resolve()}"
    assert record.study_name_at(tmp_path / "old") == "old"
    assert migrate(legacy)["schema_version"] == SCHEMA_VERSION and "yolo_yaml" in legacy["dataset"]  # input kept


def test_a_version_1_record_of_several_frameworks(tmp_path):
    yolo_space, maskrcnn_space = {"searched": {}, "fixed": {"lr0": 0.01}}, {"searched": {}, "fixed": {"SEED": 0}}
    flat = {
        **_version_1(tmp_path),
        "framework": "yolo,maskrcnn",
        "model": "",
        "weights": None,
        "objectives": [["segm/AP", "max"], ["cost/latency_ms", "min"]],
        "frameworks": {
            "yolo": {
                "backend": "",
                "models": ["yolo11n-seg.yaml", "yolo11s-seg.yaml"],
                "weights": None,
                "space": yolo_space,
            },
            "maskrcnn": {
                "backend": "torchvision",
                "models": ["maskrcnn_resnet18_fpn"],
                "weights": "DEFAULT",
                "space": maskrcnn_space,
            },
        },
    }
    record = RunSettings.load(_write(tmp_path / "both", flat))
    assert record.is_multi and record.framework_names == ("yolo", "maskrcnn")
    assert record.framework_entry("maskrcnn") == FrameworkEntry(
        "maskrcnn", "torchvision", ("maskrcnn_resnet18_fpn",), "DEFAULT", maskrcnn_space
    )
    assert record.frameworks[0].models == ("yolo11n-seg.yaml", "yolo11s-seg.yaml") and record.space == SPACE
    assert record.objective.objectives == (("segm/AP", "max"), ("cost/latency_ms", "min"))
    with pytest.raises(ValueError, match="no one framework"):
        record.sole_framework  # noqa: B018 (the property raises)
    with pytest.raises(KeyError, match="no framework 'sam'"):
        record.framework_entry("sam")


def test_a_saved_record_round_trips_with_its_schema_version(tmp_path):
    record = RunSettings.load(_write(tmp_path / "exp", _version_1(tmp_path)))
    (tmp_path / "copy").mkdir()
    record.save(tmp_path / "copy")
    saved = json.loads((tmp_path / "copy" / SETTINGS_FILE).read_text())
    assert saved["schema_version"] == SCHEMA_VERSION and migrate(saved) == saved  # current: unchanged
    assert set(saved) == {
        "schema_version",
        "data",
        "frameworks",
        "space",
        "objective",
        "budget",
        "schedule",
        "resources",
        "study",
        "confirmation",
        "seed",
        "options",
        "experiment_dir",
    }
    assert saved["frameworks"] == [
        {"name": "yolo", "backend": "", "models": ["yolo11n-seg.yaml"], "weights": "yolo11n-seg.pt", "space": SPACE}
    ]
    assert RunSettings.load(tmp_path / "copy") == record
    assert RunSettings.from_dict(json.loads(json.dumps(record.to_dict()))) == record


def test_a_newer_record_is_refused_in_one_line_naming_the_fix(tmp_path, capsys):
    newer = {**_version_1(tmp_path), "schema_version": SCHEMA_VERSION + 1}
    experiment = _write(tmp_path / "runs" / "future", newer)
    with pytest.raises(ExperimentError) as error:
        RunSettings.load(experiment)
    message = str(error.value)
    assert "\n" not in message and "upgrade segtune" in message and str(experiment / SETTINGS_FILE) in message
    with pytest.raises(ExperimentError, match="upgrade segtune"):  # the analysis commands say the same
        load_experiment(experiment)
    # `segtune tune --resume`: the same one line, exit status 2, before Ray starts.
    (experiment / "tuner.pkl").write_bytes(b"")  # what Ray's Tuner.can_restore looks for
    status = main(["--framework", "yolo", "--storage", str(tmp_path / "runs"), "--name", "future", "--resume"])
    err = capsys.readouterr().err.strip()
    assert status == 2 and "\n" not in err and "upgrade segtune" in err, err
    for version in (0, "2", True):
        with pytest.raises(ExperimentError, match="not a version"):
            migrate({"schema_version": version})


@pytest.mark.parametrize(
    "make, words",
    [
        (lambda: Objective("segm/AP", "maximise"), "objective.mode must be max or min"),
        (lambda: Objective("segm/AP", "max", (("bbox/AP", "max"), ("cost/fps", "max"))), "must start with the metric"),
        (lambda: Budget(0, num_samples=4), "budget.max_epochs must be >= 1"),
        (lambda: Budget(3, num_samples=0), "budget.num_samples must be >= 1"),
        (lambda: Budget(3, 4, budget_epochs=0), "budget.budget_epochs"),
        (lambda: Budget(3, 4, time_budget=-1.0), "budget.time_budget must be > 0"),
        (lambda: Schedule(sampler="grid"), "schedule.sampler must be tpe or random"),
        (lambda: Schedule(scheduler="hyperband"), "schedule.scheduler must be asha or none"),
        (lambda: Schedule(grace_period=0), "schedule.grace_period must be >= 1"),
        (lambda: Schedule(reduction_factor=1.0), "schedule.reduction_factor must be > 1"),
        (lambda: Resources(cpus_per_trial=0), "resources.cpus_per_trial must be > 0"),
        (lambda: Resources(max_concurrent=0), "resources.max_concurrent must be >= 1"),
        (lambda: Confirmation(top=2, seeds=0), "confirmation.seeds must be >= 1"),
        (lambda: FrameworkEntry("yolo,maskrcnn"), "one name"),
    ],
)
def test_every_section_checks_its_values(make, words):
    with pytest.raises(ConfigError, match=words) as error:
        make()
    assert "\n" not in str(error.value)


def test_the_record_checks_what_spans_its_sections(tmp_path):
    data = PreparedDataset.from_dict(_dataset(tmp_path))
    entry = FrameworkEntry("yolo", models=("yolo11n-seg.yaml",), space=SPACE)
    ok = RunSettings(data, (entry,), SPACE, Objective("segm/AP", "max"), Budget(3, 4), Schedule(grace_period=3))
    assert ok.sole_framework is entry
    with pytest.raises(ConfigError, match="grace_period .4. is longer than budget.max_epochs .3."):
        RunSettings(data, (entry,), SPACE, Objective("segm/AP", "max"), Budget(3, 4), Schedule(grace_period=4))
    with pytest.raises(ConfigError, match="each framework of the search once"):
        RunSettings(data, (entry, entry), SPACE, Objective("segm/AP", "max"), Budget(3, 4))
    with pytest.raises(ConfigError, match="each framework of the search once"):
        RunSettings(data, (), SPACE, Objective("segm/AP", "max"), Budget(3, 4))
    with pytest.raises(ConfigError, match="the framework's own space"):
        RunSettings(data, (entry,), {}, Objective("segm/AP", "max"), Budget(3, 4))
    bad = {**_version_1(tmp_path), "mode": "maximise"}  # a hand-edited record: refused when read
    with pytest.raises(ExperimentError, match="cannot be read .objective.mode must be max or min"):
        load_experiment(_write(tmp_path / "edited", bad))
