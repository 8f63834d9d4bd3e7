"""The command line is parsed once, into a frozen `TuneRequest` (runners/command/request.py), and the
argparse Namespace never leaves runners/command/: everything below reads the typed request."""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import pytest
import tomllib
from conftest import REPO_ROOT

from segtune.core.errors import ConfigError
from segtune.runners.command.request import parse_request
from segtune.runners.request import FrameworkRequest, TuneRequest


def test_parse_request_returns_a_frozen_typed_request(tmp_path):
    request = parse_request(
        [
            "--framework",
            "yolo",
            "--num-samples",
            "4",
            "--quiet",
            "--seed",
            "3",
            "--study-storage",
            "sqlite:///rel.db",
            "--iters-per-epoch",
            "5",
        ]
    )
    assert isinstance(request, TuneRequest)
    assert request.frameworks == (FrameworkRequest("yolo"),) and not request.several
    assert (request.budget.num_samples, request.output.verbosity, request.seed) == (4, "quiet", 3)
    assert request.study.storage.startswith("sqlite:////")  # made absolute: a resume may run elsewhere
    assert dict(request.adapter_options) == {"iters_per_epoch": 5}
    assert request.given == {"framework", "num_samples", "quiet", "seed", "study_storage", "iters_per_epoch"}
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.seed = 4
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.budget.num_samples = 8
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.frameworks[0].models = ("yolo11s-seg.yaml",)


def test_a_config_file_names_the_model_it_trains(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("framework: yolo\nmodel: yolo11s-seg.yaml\nweights: w.pt\nparams: {lr0: 0.01}\n")
    (framework,) = parse_request(["--framework", "yolo", "--config", str(config)]).frameworks
    assert (framework.models, framework.weights) == (("yolo11s-seg.yaml",), "w.pt")
    (framework,) = parse_request(
        ["--framework", "yolo", "--config", str(config), "--model", "yolo11n-seg.yaml"]
    ).frameworks
    assert framework.models == ("yolo11n-seg.yaml",)  # the command line wins
    with pytest.raises(ConfigError, match="is a yolo config; run it with --framework yolo"):
        parse_request(["--framework", "maskrcnn", "--config", str(config)])


def test_several_frameworks_take_their_space_files_by_the_framework_they_name(tmp_path):
    space = tmp_path / "mine.yaml"
    space.write_text("framework: maskrcnn\nparams:\n  lr: {type: float, low: 0.001, high: 0.01, log: true}\n")
    request = parse_request(["--framework", "yolo,maskrcnn", "--space", str(space), "--weights", "maskrcnn=w.pt"])
    assert [(f.name, f.space, f.weights) for f in request.frameworks] == [
        ("yolo", None, None),
        ("maskrcnn", space, "w.pt"),
    ]
    with pytest.raises(ConfigError, match="--config trains one configuration of one framework"):
        parse_request(["--framework", "yolo,maskrcnn", "--config", str(space)])


# ---- the Namespace stays in runners/command/ -------------------------------------------------------
def _package_dirs() -> list[Path]:
    """The folders of segtune's packages (pyproject's package-dir)."""
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    return [REPO_ROOT / folder for folder in pyproject["tool"]["setuptools"]["package-dir"].values()]


def _namespace_uses(source: str) -> list[str]:
    """Where `source` refers to argparse.Namespace, or a function takes an `args` parameter."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr == "Namespace":
            found.append(f"line {node.lineno}: Namespace")
        elif (
            isinstance(node, ast.ImportFrom)
            and node.module == "argparse"
            and any(alias.name == "Namespace" for alias in node.names)
        ):
            found.append(f"line {node.lineno}: from argparse import Namespace")
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            params = node.args.posonlyargs + node.args.args + node.args.kwonlyargs
            found += [f"line {node.lineno}: {getattr(node, 'name', 'lambda')}(args)" for p in params if p.arg == "args"]
    return found


def _own_command_line(path: Path, source: str) -> bool:
    """runners/command/ (segtune tune's), or an analysis script with its own parser (segtune rank, ...)."""
    if path.parent == REPO_ROOT / "runners" / "command":
        return True
    return path.parent == REPO_ROOT / "analysis" and "\ndef build_parser(" in source


def test_the_scan_finds_a_namespace_passed_down():
    assert _namespace_uses("import argparse\ndef plan(args: argparse.Namespace) -> int: ...\n")
    assert _namespace_uses("from argparse import Namespace\n")
    assert _namespace_uses("def search_budget(args, has_gpu): ...\n")
    assert not _namespace_uses("def search_budget(budget, has_gpu, *args): ...\n")


def test_no_module_below_the_command_line_sees_the_namespace():
    offenders, scanned = [], 0
    for folder in _package_dirs():
        for path in sorted(folder.rglob("*.py")):
            source = path.read_text()
            if _own_command_line(path, source):
                continue
            scanned += 1
            offenders += [f"{path.relative_to(REPO_ROOT)} {use}" for use in _namespace_uses(source)]
    assert scanned > 50 and (REPO_ROOT / "runners" / "launch.py").is_file()
    assert not offenders, "the argparse Namespace leaked out of runners/command/: " + "; ".join(offenders)
