"""Detectron2 starting weights: a local file, a detectron2:// or http(s) URL, or a zoo config name
(its published trained weights), downloaded once by the driver into Detectron2's own cache, with
a clear error when offline.
"""

from __future__ import annotations

import pickle
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

from segtune.core.errors import ConfigError
from segtune.trainers.maskrcnn.detectron2.params import WHO
from segtune.trainers.maskrcnn.detectron2.zoo import URL_PREFIX, zoo_dirs, zoo_weight_urls

PROBE_TIMEOUT_S = 5.0


def weights_url(weights: str) -> str | None:
    """The download URL that `weights` names, or None for a local file (existing or not)."""
    if weights.startswith("detectron2://"):
        return URL_PREFIX + weights[len("detectron2://") :]
    if weights.startswith(("http://", "https://")):
        return weights
    if Path(weights).expanduser().exists():
        return None
    name = weights.removeprefix("configs/")
    for suffix in (".yaml", ".py"):
        name = name.removesuffix(suffix)
    urls = zoo_weight_urls()
    if name in urls:
        return urls[name]
    if weights.endswith(".yaml") and any((d / weights).is_file() for d in zoo_dirs()):
        raise ConfigError(f"{WHO}: the model zoo publishes no trained weights for {weights}; pass a weights file")
    return None


def cached_path(url: str) -> Path:
    """Where detectron2's PathManager (iopath) caches a downloaded URL."""
    from iopath.common.file_io import get_cache_dir

    parsed = urlparse(url)
    return Path(get_cache_dir()) / Path(parsed.path.lstrip("/")).parent / url.split("/")[-1]


def _open_url(url: str) -> None:
    """A HEAD request: raises URLError/OSError when offline, HTTPError when the file is missing."""
    with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=PROBE_TIMEOUT_S):
        pass


def check_weights_file(path: Path) -> None:
    """Load the file the way Detectron2's checkpointer will, so a corrupt file fails here."""
    try:
        if path.suffix == ".pkl":
            with open(path, "rb") as f:
                data = pickle.load(f, encoding="latin1")
        else:
            import torch

            data = torch.load(path, map_location="cpu")
    except Exception as exc:
        raise ConfigError(
            f"{WHO}: weights file {path} cannot be loaded ({type(exc).__name__}); it is corrupt or "
            "not a Detectron2/Caffe2 checkpoint"
        ) from None
    if not isinstance(data, dict):
        raise ConfigError(f"{WHO}: weights file {path} holds a {type(data).__name__}, not a checkpoint dict")


def resolve_weights(weights: str | None, *, download: bool = True, check: bool = True) -> str:
    """A local weights file for MODEL.WEIGHTS ("" = from scratch); downloads into Detectron2's cache."""
    if not weights:
        return ""
    url = weights_url(weights)
    if url is None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise ConfigError(
                f"{WHO}: weights file {weights} does not exist; pass a .pth/.pkl file, a detectron2:// "
                "URL, a zoo config name (its trained weights), or no weights to train from scratch"
            )
        if check:
            check_weights_file(path)
        return str(path.resolve())
    cached = cached_path(url)
    if cached.is_file():
        return str(cached)
    if not download:
        return url
    try:
        _open_url(url)
    except urllib.error.HTTPError as exc:
        raise ConfigError(
            f"{WHO}: weights {weights} ({url}) cannot be downloaded: HTTP {exc.code}; check the name"
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ConfigError(
            f"{WHO}: weights {weights} need a download from {url} and this machine is offline "
            f"({reason}); pass a local weights file, or no weights to train from scratch"
        ) from None
    from detectron2.utils.file_io import PathManager

    local = Path(PathManager.get_local_path(url))
    if check:
        check_weights_file(local)
    return str(local)
