"""The search-space format: what each entry becomes, and the errors for what it must not be."""

from __future__ import annotations

import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from segtune.core.errors import SpaceError
from segtune.search_spaces.space import SPACES_DIR, default_space_path, load_space, parse_space, thaw


def test_each_kind_becomes_its_optuna_distribution():
    space = parse_space(
        {
            "lr0": {"type": "float", "low": 1.0e-4, "high": 0.1, "log": True},
            "scale": {"type": "float", "low": 0.1, "high": 0.9, "step": 0.1},
            "close_mosaic": {"type": "int", "low": 0, "high": 20, "step": 5},
            "optimizer": {"type": "categorical", "choices": ["SGD", "AdamW"]},
            "anchors": {"type": "categorical", "choices": [[[32], [64]], [[16], [32]]]},
            "imgsz": 640,
            "cache": {"type": "fixed", "value": "ram"},
        }
    )
    assert space.searched["lr0"] == FloatDistribution(1.0e-4, 0.1, log=True)
    assert space.searched["scale"] == FloatDistribution(0.1, 0.9, step=0.1)
    assert space.searched["close_mosaic"] == IntDistribution(0, 20, step=5)
    assert space.searched["optimizer"] == CategoricalDistribution(["SGD", "AdamW"])
    assert thaw(space.searched["anchors"].choices[0]) == [[32], [64]]  # lists survive as choices
    assert space.fixed == {"imgsz": 640, "cache": "ram"}
    assert space.keys == {"lr0", "scale", "close_mosaic", "optimizer", "anchors", "imgsz", "cache"}


def test_yaml_1_1_exponents_without_a_dot_are_numbers(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text("params:\n  lr0: {type: float, low: 1e-4, high: 1e-1, log: true}\n")
    assert load_space(path).searched["lr0"] == FloatDistribution(1e-4, 1e-1, log=True)


def test_with_fixed_overrides_a_searched_key():
    space = parse_space({"lr0": {"type": "float", "low": 0.001, "high": 0.1}}).with_fixed({"lr0": 0.01, "seed": 3})
    assert space.searched == {} and space.fixed == {"lr0": 0.01, "seed": 3}


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"type": "float", "low": 1.0, "high": 0.1}, "low (1.0) > high (0.1)"),
        ({"type": "float", "low": 0.0, "high": 1.0, "log": True}, "needs low > 0"),
        ({"type": "float", "low": 0.1, "high": 1.0, "log": True, "step": 0.1}, "cannot be combined"),
        ({"type": "int", "low": 0.5, "high": 4}, "must be whole"),
        ({"type": "int", "low": 0, "high": 4, "step": 0}, "'step' must be > 0"),
        ({"type": "float", "low": "a lot", "high": 1.0}, "must be a number"),
        ({"type": "float", "high": 1.0}, "missing 'low'"),
        ({"type": "categorical", "choices": []}, "non-empty list"),
        ({"type": "categorical", "choices": "SGD"}, "non-empty list"),
        ({"type": "uniform", "low": 0, "high": 1}, "unknown type 'uniform'"),
        ({"type": "float", "low": 0, "high": 1, "logscale": True}, "unknown field(s) ['logscale']"),
        ({"low": 0, "high": 1}, "needs 'type'"),
    ],
)
def test_invalid_entries_name_the_key_and_the_problem(spec, message):
    with pytest.raises(SpaceError) as error:
        parse_space({"lr0": spec}, source="space.yaml")
    assert str(error.value).startswith("space.yaml: lr0: ") and message in str(error.value)


@pytest.mark.parametrize(
    "text, message",
    [
        ("params: {}\n", "'params' is empty"),
        ("- lr0\n", "a mapping with a 'params' mapping"),
        ("params:\n  lr0: {type: float\n", "invalid YAML"),
        ("params:\n  lr0: !!python/object/apply:os.getcwd []\n", "unsupported YAML tag"),
        ("framework: yolo\nsearch: {}\nparams: {a: 1}\n", "unknown top-level key"),
    ],
)
def test_invalid_files(tmp_path, text, message):
    path = tmp_path / "space.yaml"
    path.write_text(text)
    with pytest.raises(SpaceError) as error:
        load_space(path)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_missing_file():
    with pytest.raises(SpaceError, match="does not exist"):
        load_space(SPACES_DIR / "nope.yaml")


@pytest.mark.parametrize("path", sorted(SPACES_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_spaces_load_and_are_valid_for_their_framework(path):
    from segtune.trainers.registry import get_adapter

    space = load_space(path)
    assert space.searched and space.framework in ("yolo", "maskrcnn")
    adapter = get_adapter(space.framework, "torchvision" if space.framework == "maskrcnn" else None)
    values = {
        **{k: thaw(v) for k, v in space.fixed.items()},
        **{
            k: thaw(getattr(d, "choices", [None])[0]) if hasattr(d, "choices") else d.low
            for k, d in space.searched.items()
        },
    }
    adapter.check_params(values)


def test_cpu_variant_is_picked_only_without_gpu():
    assert default_space_path("yolo", cpu_only=True).name == "yolo_cpu.yaml"
    assert default_space_path("yolo", cpu_only=False).name == "yolo.yaml"


def test_floats_without_a_dot_are_floats(tmp_path):
    """YAML 1.1 reads 1e-5 as a string; a config or space must get the number (JSON and Python do)."""
    from segtune.search_spaces.space import load_yaml

    path = tmp_path / "config.yaml"
    path.write_text('lr0: 1e-5\nperspective: 5E-05\nscale: -3e+2\nquoted: "1e-5"\nname: 1e5x\nlrf: 1.0e-02\n')
    assert load_yaml(path) == {
        "lr0": 1e-5,
        "perspective": 5e-5,
        "scale": -300.0,
        "quoted": "1e-5",
        "name": "1e5x",
        "lrf": 0.01,
    }
    space = tmp_path / "space.yaml"
    space.write_text("params:\n  lr0: {type: float, low: 1e-5, high: 1e-1, log: true}\n")
    assert load_space(space).searched["lr0"].low == 1e-5
