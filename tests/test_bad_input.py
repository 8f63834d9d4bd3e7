"""Bad input: one clear line on stderr, exit status 2, and nothing written or overwritten.

Most checks run before Ray starts, so the runner is called in-process (`runners.tune.main`).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import edit_annotations

from segtune.runners.command import main

SPACE_HEADER = "framework: yolo\nparams:\n"


@pytest.fixture
def workdir(tmp_path, dataset):
    """A writable copy of the data (tmp_path/data), an empty storage dir and a cache dir."""
    (tmp_path / "runs").mkdir()
    return tmp_path


def run(workdir: Path, *args: str, data: bool = True) -> int:
    argv = [
        "--framework",
        "yolo",
        "--storage",
        str(workdir / "runs"),
        "--cache-dir",
        str(workdir / "cache"),
        "--name",
        "exp",
        *args,
    ]
    if data and "--data" not in args:
        argv += ["--data", str(workdir / "data")]
    return main(argv)


def assert_clean_error(capsys, workdir: Path, status: int, *words: str) -> None:
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2, err
    assert len(err) == 1 and err[0].startswith("tune.py: error:"), err
    for word in words:
        assert word.lower() in err[0].lower(), (word, err[0])
    assert list((workdir / "runs").iterdir()) == [], "something was written into --storage"


def train_json(workdir: Path) -> Path:
    return workdir / "data" / "annotations" / "instances_train.json"


def write_space(workdir: Path, body: str) -> str:
    path = workdir / "space.yaml"
    path.write_text(body)
    return str(path)


# ---- data -------------------------------------------------------------------------------------
def test_data_path_missing(capsys, workdir):
    assert_clean_error(capsys, workdir, run(workdir, "--data", str(workdir / "nope")), "nope")


def test_json_not_coco_instances(capsys, workdir):
    train_json(workdir).write_text(json.dumps({"images": []}))
    assert_clean_error(capsys, workdir, run(workdir), "instances_train.json")


def test_image_files_missing(capsys, workdir):
    next((workdir / "data" / "images" / "train").iterdir()).unlink()
    assert_clean_error(capsys, workdir, run(workdir), "missing")


def test_no_annotations(capsys, workdir):
    edit_annotations(workdir / "data", "train", lambda d: d.update(annotations=[]))
    assert_clean_error(capsys, workdir, run(workdir), "annotation")


def test_polygon_with_two_points(capsys, workdir):
    edit_annotations(workdir / "data", "train", lambda d: d["annotations"][0].update(segmentation=[[1, 1, 5, 5]]))
    assert_clean_error(capsys, workdir, run(workdir), "polygon", "3")


def test_unknown_category(capsys, workdir):
    edit_annotations(workdir / "data", "train", lambda d: d["annotations"][0].update(category_id=99))
    assert_clean_error(capsys, workdir, run(workdir), "99")


def test_duplicate_image_ids(capsys, workdir):
    def duplicate(d):
        d["images"][1]["id"] = d["images"][0]["id"]

    edit_annotations(workdir / "data", "train", duplicate)
    assert_clean_error(capsys, workdir, run(workdir), "image id", "more than one image")


# ---- command line -----------------------------------------------------------------------------
def test_unknown_framework(capsys, workdir):
    with pytest.raises(SystemExit) as exit_info:
        main(["--framework", "mmdet"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "mmdet" in err[0]


def test_unknown_backend(capsys, workdir):
    status = main(["--framework", "maskrcnn", "--backend", "mmdet", "--storage", str(workdir / "runs")])
    assert_clean_error(capsys, workdir, status, "mmdet", "torchvision")


@pytest.mark.parametrize(
    "args, words",
    [
        (["--grace-period", "5", "--max-epochs", "3"], ["grace-period"]),
        (["--max-epochs", "0"], ["max-epochs"]),
        (["--num-samples", "-1"], ["num-samples"]),
        (["--time-budget", "0"], ["time-budget"]),
        (["--metric", "segm/mAP"], ["segm/mAP", "segm/AP"]),
        (["--metric", "yolo/made_up"], ["yolo/made_up"]),
        (["--gpus-per-trial", "64"], ["gpus-per-trial"]),
        (["--address", "127.0.0.1:1"], ["127.0.0.1:1"]),
        (["--weights", "missing.pt"], ["missing.pt"]),
        (["--model", "yolo11n-seg.pt"], ["offline"]),
        (["--resume"], ["nothing to resume"]),
    ],
)
def test_bad_flags(capsys, workdir, args, words):
    assert_clean_error(capsys, workdir, run(workdir, *args), *words)


@pytest.mark.parametrize("name", ["a/b", "..", "../up", "x/../y"])
def test_name_with_path_parts(capsys, workdir, name):
    status = main(["--framework", "yolo", "--storage", str(workdir / "runs"), "--name", name])
    assert_clean_error(capsys, workdir, status, "--name")


def test_storage_not_writable(capsys, workdir):
    blocker = workdir / "a-file"
    blocker.write_text("not a directory")
    status = main(["--framework", "yolo", "--storage", str(blocker / "runs"), "--name", "x"])
    assert_clean_error(capsys, workdir, status, "not writable")


def test_corrupt_weights(capsys, workdir):
    corrupt = workdir / "corrupt.pt"
    corrupt.write_bytes(b"\x00not a checkpoint" * 10)
    assert_clean_error(capsys, workdir, run(workdir, "--weights", str(corrupt)), "corrupt.pt")


def test_existing_experiment_is_never_overwritten(capsys, workdir):
    existing = workdir / "runs" / "exp"
    existing.mkdir()
    (existing / "precious.txt").write_text("finished work")
    status = run(workdir)
    err = capsys.readouterr().err
    assert status == 2 and "--resume" in err and "already exists" in err
    assert (existing / "precious.txt").read_text() == "finished work"
    assert sorted(p.name for p in existing.iterdir()) == ["precious.txt"]


# ---- search spaces ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "body, words",
    [
        ("  not_a_yolo_arg: {type: float, low: 0.1, high: 0.2}\n", ["not_a_yolo_arg"]),
        ("  lr0: {type: float, low: 0.1, high: 0.01}\n", ["lr0", "low"]),
        ("  lr0: {type: float, low: 0.0, high: 0.1, log: true}\n", ["lr0", "log"]),
        ("  optimizer: {type: categorical, choices: []}\n", ["optimizer", "choices"]),
        ("  lr0: {type: float, low: 0.1\n", ["invalid YAML"]),
        ("  lr0: !!python/object/apply:os.system ['touch /tmp/segtune-pwned']\n", ["tag"]),
        ("  optimizer: auto\n", ["auto"]),
        ("  lr0: {type: uniform, low: 0.1, high: 0.2}\n", ["uniform"]),
    ],
)
def test_bad_search_space(capsys, workdir, body, words):
    space = write_space(workdir, SPACE_HEADER + body)
    assert_clean_error(capsys, workdir, run(workdir, "--space", space), *words)
    assert not Path("/tmp/segtune-pwned").exists()


def test_space_of_another_framework(capsys, workdir):
    space = write_space(workdir, "framework: maskrcnn\nparams:\n  SOLVER.BASE_LR: 0.01\n")
    assert_clean_error(capsys, workdir, run(workdir, "--space", space), "maskrcnn")


def test_config_of_another_framework(capsys, workdir):
    config = workdir / "config.yaml"
    config.write_text("framework: maskrcnn\nbackend: torchvision\nparams: {SOLVER.BASE_LR: 0.01}\n")
    assert_clean_error(capsys, workdir, run(workdir, "--config", str(config)), "maskrcnn", "--framework")


def test_cache_dir_not_writable(capsys, workdir):
    blocker = workdir / "a-file"
    blocker.write_text("not a directory")
    status = main(
        [
            "--framework",
            "yolo",
            "--storage",
            str(workdir / "runs"),
            "--name",
            "x",
            "--data",
            str(workdir / "data"),
            "--cache-dir",
            str(blocker / "cache"),
        ]
    )
    assert_clean_error(capsys, workdir, status, "--cache-dir", "not writable")
