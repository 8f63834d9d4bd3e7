"""Adapters by name. Modules are imported on demand, so a framework's library is only needed when used."""
from __future__ import annotations

import importlib
import importlib.util

from trainers.base import ConfigError, TrainerAdapter

# (framework, backend) -> "module:Class"
_ADAPTERS: dict[tuple[str, str], str] = {
    ("yolo", ""): "trainers.yolo:YoloAdapter",
    ("maskrcnn", "torchvision"): "trainers.maskrcnn_torchvision:TorchvisionMaskRCNN",
    ("maskrcnn", "detectron2"): "trainers.maskrcnn_detectron2:Detectron2MaskRCNN",
}
FRAMEWORKS: tuple[str, ...] = tuple(dict.fromkeys(fw for fw, _ in _ADAPTERS))
BACKENDS: dict[str, tuple[str, ...]] = {
    fw: tuple(b for f, b in _ADAPTERS if f == fw and b) for fw in FRAMEWORKS
}


def detectron2_available() -> bool:
    return importlib.util.find_spec("detectron2") is not None


def resolve_backend(framework: str, backend: str | None) -> str:
    """The concrete backend for a framework; "auto" picks Detectron2 when importable."""
    if framework not in FRAMEWORKS:
        raise ConfigError(f"unknown framework {framework!r}; choose one of: {', '.join(FRAMEWORKS)}")
    choices = BACKENDS[framework]
    if not choices:
        if backend not in (None, "", "auto"):
            raise ConfigError(f"--backend does not apply to {framework}; leave it out")
        return ""
    if backend in (None, "", "auto"):
        return "detectron2" if "detectron2" in choices and detectron2_available() else choices[0]
    if backend not in choices:
        raise ConfigError(
            f"unknown backend {backend!r} for {framework}; choose one of: auto, {', '.join(choices)}"
        )
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
