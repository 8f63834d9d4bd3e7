"""One import package, one command: what `pip install` puts into an environment, and how it is started."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")

REPO_ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
PACKAGE_DIRS: dict[str, str] = PYPROJECT["tool"]["setuptools"]["package-dir"]
CODE_DIRS = ("segtune", "core", "cocodata", "search_spaces", "trainers", "runners", "analysis", "bench")


def _package_folders() -> dict[str, Path]:
    """Every package the repository holds, by the name it has once installed (segtune.<...>)."""
    found = {}
    for name, folder in PACKAGE_DIRS.items():
        root = REPO_ROOT / folder
        for init in root.rglob("__init__.py"):
            parts = init.parent.relative_to(root).parts
            found[".".join((name, *parts))] = init.parent
    return found


def _sources() -> list[Path]:
    return sorted(p for d in CODE_DIRS for p in (REPO_ROOT / d).rglob("*.py"))


def test_every_package_is_listed_in_pyproject():
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    folders = set(_package_folders())
    assert folders - listed == set(), "add these packages to [tool.setuptools] packages in pyproject.toml"
    assert listed - folders == set(), "pyproject.toml lists packages that have no folder"


def test_the_wheel_holds_one_top_level_package_and_the_command(tmp_path):
    """`pip install .` installs exactly one import package, segtune, and the `segtune` console script."""
    source = tmp_path / "src"
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout
    for name in tracked.split():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO_ROOT / name, source / name)
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path / "dist"), str(source)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if proc.returncode and "No matching distribution" in proc.stderr:
        pytest.skip(f"the build backend could not be installed (no package index?): {proc.stderr[-300:]}")
    assert proc.returncode == 0, proc.stderr[-2000:]
    (wheel,) = (tmp_path / "dist").glob("segtune-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"segtune"}
    assert "segtune/runners/search/tuner.py" in names and "segtune/search_spaces/yolo.yaml" in names
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "segtune = segtune.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=120)


def test_the_command_works_from_any_directory(tmp_path):
    script = Path(sys.executable).parent / "segtune"
    assert script.exists(), f"no console script at {script}: install segtune with pip install -e ."
    top = _run([str(script), "--help"], tmp_path)
    assert top.returncode == 0 and all(c in top.stdout for c in ("tune", "rank", "report", "export", "evaluate"))
    tune = _run([str(script), "tune", "--framework", "yolo", "--help"], tmp_path)
    assert tune.returncode == 0 and "--num-samples" in tune.stdout and "usage: segtune tune" in tune.stdout
    module = _run([sys.executable, "-m", "segtune", "--help"], tmp_path)
    assert module.returncode == 0 and module.stdout == top.stdout
    for command, option in (("rank", "--metric"), ("report", "--out"), ("export", "--out"), ("evaluate", "GT_JSON")):
        proc = _run([str(script), command, "--help"], tmp_path)
        assert proc.returncode == 0 and f"usage: segtune {command}" in proc.stdout and option in proc.stdout
    unknown = _run([str(script), "tuen"], tmp_path)
    assert unknown.returncode == 2 and unknown.stderr.count("\n") == 1 and "tune" in unknown.stderr


def test_the_scripts_keep_working_from_the_clone():
    for script in (
        "runners/tune.py",
        "analysis/rank.py",
        "analysis/report.py",
        "analysis/export_best.py",
        "analysis/evaluate.py",
    ):
        proc = _run([sys.executable, script, "--help"], REPO_ROOT)
        assert proc.returncode == 0 and proc.stdout.startswith("usage:"), (script, proc.stderr[-500:])


def test_no_module_edits_sys_path():
    offenders = []
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text())):
            target = node.func.value if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) else None
            if isinstance(target, ast.Attribute) and target.attr == "path" and getattr(target.value, "id", "") == "sys":
                offenders.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno}")
    assert offenders == []


def _module_names(path: Path) -> set[str]:
    """Names bound to segtune modules in `path` (import segtune.a.b as m; from segtune.a import b)."""
    folders = _package_folders()
    bound = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            bound |= {a.asname for a in node.names if a.name.startswith("segtune.") and a.asname}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("segtune"):
            folder = folders.get(node.module)
            if folder is not None:
                bound |= {
                    a.asname or a.name
                    for a in node.names
                    if (folder / f"{a.name}.py").exists() or (folder / a.name / "__init__.py").exists()
                }
    return bound


def test_no_module_uses_another_modules_private_names():
    """`from segtune.x import _y` and `module._y` reach into another module's internals: make the name public."""
    offenders = []
    for path in _sources():
        tree = ast.parse(path.read_text())
        modules = _module_names(path)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("segtune"):
                offenders += [
                    f"{path.relative_to(REPO_ROOT)}:{node.lineno} imports {a.name}"
                    for a in node.names
                    if a.name.startswith("_") and not a.name.startswith("__")
                ]
            elif (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in modules
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
            ):
                offenders.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno} uses {node.value.id}.{node.attr}")
    assert offenders == []


# runners/ in layers, top to bottom (runners/__init__.py): each may import only the ones listed.
LAYERS = {
    "tune": {"command"},  # the script shim
    "command": {"launch", "plan", "request"},
    "launch": {"plan", "search", "cluster", "view", "request"},
    "search": {"plan", "trial", "view"},
    "plan": {"request"},
    "trial": set(),
    "view": {"cluster"},
    "cluster": set(),
    "request": set(),
}


def test_the_runners_layers_depend_one_way():
    found: dict[str, set[str]] = {}
    for path in sorted((REPO_ROOT / "runners").rglob("*.py")):
        rel = path.relative_to(REPO_ROOT / "runners")
        layer = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        if layer == "__init__":
            continue
        assert layer in LAYERS, f"runners/{rel}: a new layer; add it to LAYERS and to runners/__init__.py"
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("segtune.runners."):
                other = node.module.split(".")[2]
                if other != layer:
                    found.setdefault(layer, set()).add(other)
    wrong = {layer: sorted(others - LAYERS[layer]) for layer, others in found.items() if others - LAYERS[layer]}
    assert wrong == {}, "an import against the layers' order: move the code, or pass it in from above"
