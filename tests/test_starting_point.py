"""Where a search starts (runners/plan/starting_point.py): pretrained by default, from scratch by choice
or, saying why in one line, when the weights cannot be had. No network: where an adapter would probe
its download host, the probe is answered here."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from segtune.core.errors import ConfigError
from segtune.runners.plan.budget import search_budget
from segtune.runners.plan.starting_point import starting_point, starting_point_of_choices
from segtune.search_spaces.space import SPACES_DIR, default_space_path, load_space
from segtune.trainers import pretrained as pretrained_module
from segtune.trainers.base import TrainerAdapter
from segtune.trainers.pretrained import PretrainedWeights


def _fake_adapter(
    answer: PretrainedWeights | None, fetched: str = "/cache/yolo11n-seg.pt", fails: Exception | None = None
) -> type[TrainerAdapter]:
    """An adapter whose look-up answers `answer` (None: must not be asked) and whose fetch returns
    `fetched` (or raises `fails`); it counts its calls."""

    class Fake(TrainerAdapter):
        framework = "yolo"
        native_prefix = "yolo/"
        default_model = "yolo11n-seg.yaml"
        default_model_cpu = "yolo11n-cpu.yaml"
        calls: list[str] = []

        @classmethod
        def param_names(cls):
            return frozenset()

        @classmethod
        def pretrained_weights(cls, model, has_gpu):
            assert answer is not None, "the look-up must not run"
            cls.calls.append("look")
            return answer

        @classmethod
        def fetch_pretrained(cls, weights):
            cls.calls.append("fetch")
            if fails:
                raise fails
            return fetched

    return Fake


FOUND = PretrainedWeights(
    "yolo11n-seg.yaml",
    "yolo11n-seg.pt",
    found_at=Path("/cache/yolo11n-seg.pt"),
    cache_path=Path("/cache/yolo11n-seg.pt"),
    url="https://github.com/x/yolo11n-seg.pt",
)
OFFLINE = PretrainedWeights(
    "yolo11n-seg.yaml",
    "yolo11n-seg.pt",
    cache_path=Path("/cache/yolo11n-seg.pt"),
    url="https://github.com/x/yolo11n-seg.pt",
    why_not="not in /cache and github.com cannot be reached (offline?)",
)
DOWNLOADABLE = PretrainedWeights(
    "yolo11n-seg.yaml",
    "yolo11n-seg.pt",
    cache_path=Path("/cache/yolo11n-seg.pt"),
    url="https://github.com/x/yolo11n-seg.pt",
    can_download=True,
)


@pytest.mark.parametrize("has_gpu, space", [(False, "yolo_finetune_cpu.yaml"), (True, "yolo_finetune.yaml")])
def test_weights_already_there_are_the_default_start_with_the_finetuning_space(has_gpu, space):
    adapter = _fake_adapter(FOUND)
    start = starting_point(adapter, model="", weights=None, space=None, has_gpu=has_gpu)
    assert (start.model, start.weights, start.pretrained, start.note) == (
        "yolo11n-seg.yaml",
        "/cache/yolo11n-seg.pt",
        True,
        None,
    )
    assert start.space_path == SPACES_DIR / space
    assert adapter.calls == ["look", "fetch"]  # fetch_pretrained readies (loads) the file once
    header = start.header()
    assert header == (
        f"model yolo11n-seg.yaml, starting from /cache/yolo11n-seg.pt (COCO-pretrained yolo11n-seg.pt, "
        f"found at /cache/yolo11n-seg.pt); search space search_spaces/{space}"
    )


def test_downloadable_weights_are_downloaded_once_and_say_so():
    adapter = _fake_adapter(DOWNLOADABLE)
    start = starting_point(adapter, model="", weights=None, space=None, has_gpu=True)
    assert start.pretrained and start.weights == "/cache/yolo11n-seg.pt"
    assert adapter.calls == ["look", "fetch"]
    assert "downloaded into /cache/yolo11n-seg.pt" in start.header()


def test_offline_trains_from_scratch_and_says_why_in_one_line():
    adapter = _fake_adapter(OFFLINE)
    start = starting_point(adapter, model="", weights=None, space=None, has_gpu=False)
    assert (start.model, start.weights, start.pretrained) == ("yolo11n-cpu.yaml", None, False)
    assert adapter.calls == ["look"]  # nothing to fetch
    assert start.space_path == SPACES_DIR / "yolo_cpu.yaml"
    header = start.header()
    assert "\n" not in header and header.startswith(
        "model yolo11n-cpu.yaml, from scratch (wanted COCO-pretrained "
        "yolo11n-seg.pt for yolo11n-seg.yaml, but not in /cache and "
        "github.com cannot be reached (offline?)"
    )
    assert "place the file at /cache/yolo11n-seg.pt or pass --weights FILE" in header
    assert start.note and start.note in header


def test_a_failed_download_trains_from_scratch_and_says_why():
    adapter = _fake_adapter(DOWNLOADABLE, fails=ConfigError("connection reset\nmore"))
    start = starting_point(adapter, model="", weights=None, space=None, has_gpu=True)
    assert not start.pretrained and start.weights is None and start.model == "yolo11n-seg.yaml"
    assert "but the download failed (connection reset)" in start.note
    assert start.space_path == SPACES_DIR / "yolo.yaml"


@pytest.mark.parametrize("weights", ["none", "None", "NONE"])
def test_weights_none_trains_from_scratch_without_looking(weights):
    start = starting_point(_fake_adapter(None), model="", weights=weights, space=None, has_gpu=False)
    assert (start.model, start.weights, start.pretrained, start.note) == ("yolo11n-cpu.yaml", None, False, None)
    assert start.header() == (
        "model yolo11n-cpu.yaml, from scratch (--weights none); search space search_spaces/yolo_cpu.yaml"
    )


def test_given_weights_are_fine_tuned_from_without_looking():
    start = starting_point(
        _fake_adapter(None), model="yolo11s-seg.yaml", weights="/mine/w.pt", space=None, has_gpu=True
    )
    assert (start.model, start.weights, start.pretrained) == ("yolo11s-seg.yaml", "/mine/w.pt", True)
    assert start.space_path == SPACES_DIR / "yolo_finetune.yaml"
    assert "starting from /mine/w.pt (--weights)" in start.header()


def test_space_overrides_the_default_for_either_start(tmp_path):
    space = tmp_path / "mine.yaml"
    for answer in (FOUND, OFFLINE):
        start = starting_point(_fake_adapter(answer), model="", weights=None, space=space, has_gpu=False)
        assert start.space_path == space and str(space) in start.header()


def test_a_model_that_is_a_weights_file_is_the_start():
    answer = PretrainedWeights("/mine/best.pt", "/mine/best.pt", in_model=True)
    start = starting_point(_fake_adapter(answer), model="/mine/best.pt", weights=None, space=None, has_gpu=False)
    assert (start.model, start.weights, start.pretrained) == ("/mine/best.pt", None, True)
    assert "starting from /mine/best.pt (--model" in start.header()


def test_a_model_without_published_weights_trains_from_scratch_without_a_note():
    answer = PretrainedWeights("custom.yaml", None, why_not="Ultralytics publishes no weights for custom.yaml")
    start = starting_point(_fake_adapter(answer), model="custom.yaml", weights=None, space=None, has_gpu=True)
    assert (start.model, start.pretrained, start.note) == ("custom.yaml", False, None)
    assert "from scratch (Ultralytics publishes no weights for custom.yaml)" in start.header()


def test_several_model_choices_train_from_scratch():
    start = starting_point_of_choices(
        _fake_adapter(None), models=("a.yaml", "b.yaml"), weights=None, space=None, has_gpu=True
    )
    assert not start.pretrained and "several --model choices" in start.header()
    one = starting_point_of_choices(_fake_adapter(FOUND), models=(), weights=None, space=None, has_gpu=True)
    assert one.pretrained


# ---- the defaults that follow the starting point --------------------------------------------------
def _budget_args(**given) -> argparse.Namespace:
    values = {
        "max_epochs": None,
        "grace_period": None,
        "num_samples": None,
        "budget_epochs": None,
        "reduction_factor": 3.0,
        "scheduler": "asha",
    }
    return argparse.Namespace(**{**values, **given})


@pytest.mark.parametrize(
    "has_gpu, cpu_epochs, pretrained, expected",
    [
        (True, 30, False, (100, 10, 16)),  # from scratch, as before
        (False, 30, False, (30, 10, 8)),
        (False, 12, False, (12, 4, 8)),
        (True, 30, True, (30, 3, 24)),  # fine-tuning: fewer epochs, more trials on a GPU
        (False, 30, True, (10, 2, 8)),
        (False, 12, True, (4, 1, 8)),
    ],
)
def test_default_budget_follows_the_starting_point(has_gpu, cpu_epochs, pretrained, expected):
    assert search_budget(_budget_args(), has_gpu, cpu_epochs, pretrained) == expected
    assert search_budget(
        _budget_args(max_epochs=7, grace_period=2, num_samples=3), has_gpu, cpu_epochs, pretrained
    ) == (7, 2, 3)


@pytest.mark.parametrize("framework", ["yolo", "maskrcnn"])
def test_one_space_rule_for_every_framework(framework):
    for cpu_only in (False, True):
        scratch = default_space_path(framework, cpu_only=cpu_only)
        finetune = default_space_path(framework, cpu_only=cpu_only, finetune=True)
        assert scratch.name == f"{framework}{'_cpu' if cpu_only else ''}.yaml"
        assert finetune.name == f"{framework}_finetune{'_cpu' if cpu_only else ''}.yaml"
        assert load_space(finetune).framework == framework


def test_finetuning_spaces_search_lower_learning_rates_and_frozen_layers():
    for cpu_only in (False, True):
        yolo, yolo_ft = (load_space(default_space_path("yolo", cpu_only, ft)) for ft in (False, True))
        assert yolo_ft.searched["lr0"].low < yolo.searched["lr0"].low
        assert yolo_ft.searched["warmup_epochs"].high <= yolo.searched["warmup_epochs"].high
        assert "freeze" in yolo_ft.searched and "freeze" not in yolo.keys
        mask, mask_ft = (load_space(default_space_path("maskrcnn", cpu_only, ft)) for ft in (False, True))
        assert mask_ft.searched["SOLVER.BASE_LR"].low < mask.searched["SOLVER.BASE_LR"].low
        assert mask_ft.searched["MODEL.BACKBONE.FREEZE_AT"].low >= 1  # the stem keeps its COCO weights


@pytest.mark.parametrize(
    "cpu_only, images, optimizer", [(True, 64, "AdamW"), (False, 64, "AdamW"), (False, 30_000, "SGD")]
)
def test_first_finetuning_trial_is_the_frameworks_defaults(cpu_only, images, optimizer):
    """The first YOLO trial is what YOLO('yolo11n-seg.pt').train() uses: every searched key's own default
    is inside the fine-tuning space (nothing clipped), the optimizer as 'auto' picks it."""
    from segtune.runners.plan.first_trials import default_point
    from segtune.trainers.base import TrainingShape
    from segtune.trainers.yolo.adapter import YoloAdapter

    space = load_space(default_space_path("yolo", cpu_only=cpu_only, finetune=True))
    shape = TrainingShape(num_train_images=images, num_classes=3, max_epochs=30, fixed=dict(space.fixed))
    defaults = YoloAdapter.default_params(space.searched, shape)
    point = default_point(space, defaults)
    assert point == defaults and set(point) == set(space.searched)
    assert point["optimizer"] == optimizer and point["freeze"] == 0 and point["warmup_epochs"] == 3.0


# ---- the adapters' own look-ups, without a network ----------------------------------------------
@pytest.fixture
def offline(monkeypatch):
    """The download hosts do not answer (as on this project's machines), whatever the machine."""
    monkeypatch.setattr(pretrained_module, "host_reachable", lambda url, timeout=2.0: False)


def test_torchvision_looks_in_torch_hub_and_trains_the_small_model_from_scratch_without(tmp_path, monkeypatch, offline):
    import torch

    from segtune.trainers.maskrcnn.torchvision.adapter import TorchvisionMaskRCNN

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    hub_file = tmp_path / "torch" / "hub" / "checkpoints" / "maskrcnn_resnet50_fpn_v2_coco-73cbd019.pth"
    start = starting_point(TorchvisionMaskRCNN, model="", weights=None, space=None, has_gpu=False)
    assert (start.model, start.pretrained) == ("maskrcnn_resnet18_fpn", False)
    assert (
        f"wanted COCO-pretrained MaskRCNN_ResNet50_FPN_V2_Weights.COCO_V1 for maskrcnn_resnet50_fpn_v2, but "
        f"not in {hub_file.parent} and download.pytorch.org cannot be reached" in start.note
    )
    assert f"place the file at {hub_file}" in start.note
    assert start.space_path.name == "maskrcnn_cpu.yaml"

    hub_file.parent.mkdir(parents=True)
    torch.save({"backbone.body.conv1.weight": torch.zeros(1)}, hub_file)  # fetch only reads it back
    start = starting_point(TorchvisionMaskRCNN, model="", weights=None, space=None, has_gpu=False)
    assert (start.model, start.weights, start.pretrained, start.note) == (
        "maskrcnn_resnet50_fpn_v2",
        "MaskRCNN_ResNet50_FPN_V2_Weights.COCO_V1",
        True,
        None,
    )
    assert f"found at {hub_file}" in start.header() and start.space_path.name == "maskrcnn_finetune_cpu.yaml"

    small = starting_point(TorchvisionMaskRCNN, model="maskrcnn_resnet18_fpn", weights=None, space=None, has_gpu=False)
    assert not small.pretrained and small.note is None
    assert "torchvision publishes no COCO weights for maskrcnn_resnet18_fpn" in small.header()


def test_yolo_looks_where_ultralytics_looks(tmp_path, monkeypatch, offline):
    from ultralytics import YOLO
    from ultralytics.utils import SETTINGS

    from segtune.trainers.yolo.adapter import YoloAdapter

    monkeypatch.chdir(tmp_path)  # Ultralytics looks at the path as given first: the working directory
    if (Path(SETTINGS["weights_dir"]).expanduser() / "yolo11n-seg.pt").is_file():
        pytest.skip(f"this machine has yolo11n-seg.pt in Ultralytics' weights_dir {SETTINGS['weights_dir']}")
    start = starting_point(YoloAdapter, model="", weights=None, space=None, has_gpu=False)
    assert (start.model, start.pretrained) == ("yolo11n-seg.yaml", False)
    assert "wanted COCO-pretrained yolo11n-seg.pt for yolo11n-seg.yaml, but not in" in start.note
    assert "github.com cannot be reached" in start.note

    YOLO("yolo11n-seg.yaml").save(tmp_path / "yolo11n-seg.pt")
    start = starting_point(YoloAdapter, model="", weights=None, space=None, has_gpu=False)
    assert (start.model, start.weights, start.pretrained) == (
        "yolo11n-seg.yaml",
        str(tmp_path / "yolo11n-seg.pt"),
        True,
    )
    assert start.space_path.name == "yolo_finetune_cpu.yaml"
    custom = starting_point(
        YoloAdapter, model=str(tmp_path / "yolo11n-seg.pt"), weights=None, space=None, has_gpu=False
    )
    assert custom.pretrained and custom.weights is None


def test_detectron2_looks_in_iopaths_cache(tmp_path, monkeypatch, offline):
    pytest.importorskip("detectron2", reason="Detectron2 is not on PyPI; build it from source to run this test")
    import pickle

    from segtune.trainers.maskrcnn.detectron2.adapter import FINETUNE_MODEL, Detectron2MaskRCNN

    monkeypatch.setenv("FVCORE_CACHE", str(tmp_path / "iopath"))  # where iopath caches Detectron2's downloads
    start = starting_point(Detectron2MaskRCNN, model="", weights=None, space=None, has_gpu=True)
    assert (start.model, start.pretrained) == (Detectron2MaskRCNN.default_model, False)
    assert "wanted COCO-pretrained model_final_" in start.note and f"for {FINETUNE_MODEL}, but not in" in start.note
    found = Detectron2MaskRCNN.pretrained_weights("", has_gpu=True)
    assert str(found.cache_path).startswith(str(tmp_path / "iopath"))
    found.cache_path.parent.mkdir(parents=True)
    found.cache_path.write_bytes(pickle.dumps({"model": {}}))
    start = starting_point(Detectron2MaskRCNN, model="", weights=None, space=None, has_gpu=True)
    assert (start.model, start.weights, start.pretrained) == (FINETUNE_MODEL, str(found.cache_path), True)
    assert start.space_path.name == "maskrcnn_finetune.yaml"
    small = Detectron2MaskRCNN.pretrained_weights("segtune/mask_rcnn_R_18_FPN_small", has_gpu=False)
    assert small.wanted is None and not small.available


def test_several_frameworks_name_every_model_choice_in_the_header():
    start = starting_point_of_choices(
        _fake_adapter(None), models=("a.yaml", "b.yaml"), weights=None, space=None, has_gpu=True
    )
    assert start.header(("a.yaml", "b.yaml")).startswith("models a.yaml, b.yaml, from scratch (several --model")
    assert start.header(("a.yaml",)).startswith("model a.yaml, from scratch")
