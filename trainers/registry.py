"""Adapters by name. Modules are imported on demand, so a framework's library is only needed when used."""

from __future__ import annotations

import importlib
import importlib.util

from segtune.core.errors import ConfigError
from segtune.trainers.base import TrainerAdapter

# (framework, backend) -> "module:Class". A backend is named after its library; `--backend auto`
# takes a framework's first backend whose library is importable, so list the preferred one first.
_ADAPTERS: dict[tuple[str, str], str] = {
    ("yolo", ""): "segtune.trainers.yolo.adapter:YoloAdapter",
    ("maskrcnn", "detectron2"): "segtune.trainers.maskrcnn.detectron2.adapter:Detectron2MaskRCNN",
    ("maskrcnn", "torchvision"): "segtune.trainers.maskrcnn.torchvision.adapter:TorchvisionMaskRCNN",
}
# Readers of datasets in a framework's own format (`--data FILE`), tried in order.
_DATASET_READERS: tuple[str, ...] = ("segtune.trainers.yolo.dataset_yaml:read_native",)
FRAMEWORKS: tuple[str, ...] = tuple(dict.fromkeys(fw for fw, _ in _ADAPTERS))
BACKENDS: dict[str, tuple[str, ...]] = {fw: tuple(b for f, b in _ADAPTERS if f == fw and b) for fw in FRAMEWORKS}


def backend_available(backend: str) -> bool:
    """Whether a backend's library is installed (found without importing it)."""
    return importlib.util.find_spec(backend) is not None


def resolve_backend(framework: str, backend: str | None) -> str:
    """The concrete backend for a framework; "auto": the first one whose library is installed."""
    if framework not in FRAMEWORKS:
        raise ConfigError(f"unknown framework {framework!r}; choose one of: {', '.join(FRAMEWORKS)}")
    choices = BACKENDS[framework]
    if not choices:
        if backend not in (None, "", "auto"):
            raise ConfigError(f"--backend does not apply to {framework}; leave it out")
        return ""
    if backend in (None, "", "auto"):
        return next((b for b in choices if backend_available(b)), choices[-1])
    if backend not in choices:
        raise ConfigError(f"unknown backend {backend!r} for {framework}; choose one of: auto, {', '.join(choices)}")
    return backend


def get_adapter(framework: str, backend: str | None = None) -> type[TrainerAdapter]:
    backend = resolve_backend(framework, backend)
    module_name, class_name = _ADAPTERS[(framework, backend)].split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"the {framework} {backend or ''} adapter needs a package that is not installed "
            f"({exc.name or exc}); install it or pick another --backend"
        ) from exc
    return getattr(module, class_name)


def dataset_readers() -> list:
    """The `cocodata.prepare.NativeReader`s of every framework, for `--data FILE`."""
    readers = []
    for entry in _DATASET_READERS:
        module_name, function = entry.split(":")
        readers.append(getattr(importlib.import_module(module_name), function))
    return readers
