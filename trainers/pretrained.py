"""The COCO-pretrained weights a framework publishes for a model, and whether this machine can have them.

An adapter answers `TrainerAdapter.pretrained_weights(model, has_gpu)` with a `PretrainedWeights`;
`segtune.runners.plan.starting_point` decides from it whether a search fine-tunes or trains from
scratch. Finding out must be fast and honest: a file already where the framework looks is used as
it is; otherwise one short connection to the download host (`host_reachable`, 2 seconds at most,
even when DNS hangs) says whether a download can be tried. Nothing is downloaded here.
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

PROBE_TIMEOUT_S = 2.0  # a search start never waits longer than this for the network


@dataclass(frozen=True)
class PretrainedWeights:
    """What an adapter knows about the pretrained weights of one model (see the module docstring).

    Example:
        YOLO's answer for the default model on a machine that has the file::

            PretrainedWeights(model="yolo11n-seg.yaml", wanted="yolo11n-seg.pt",
                              found_at=Path("/home/me/weights/yolo11n-seg.pt"),
                              cache_path=Path("/home/me/weights/yolo11n-seg.pt"),
                              url="https://github.com/ultralytics/assets/releases/download/v8.4.0/yolo11n-seg.pt")
    """

    model: str  # the model they belong to: the one a fine-tuning search trains
    wanted: str | None  # the weights as the framework names them; None: it publishes none for `model`
    found_at: Path | None = None  # the file, already where the framework looks for it
    cache_path: Path | None = None  # where the framework keeps its download (where a user may place the file)
    url: str = ""  # where the framework downloads them from
    can_download: bool = False  # not found, but the download host answered
    why_not: str = ""  # when neither found nor downloadable (or none published): why, in a few words
    in_model: bool = False  # the model itself is a weights file (e.g. a YOLO .pt): nothing to add

    @property
    def available(self) -> bool:
        return self.in_model or self.found_at is not None or self.can_download


def host_reachable(url: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
    """Whether `url`'s host accepts a connection on port 443, bounded by `timeout` even when DNS hangs."""
    host = urlparse(url).hostname or ""
    result: list[bool] = []

    def probe() -> None:
        try:
            with socket.create_connection((host, 443), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(result and result[0])


def offline_reason(url: str) -> str:
    """The why_not of weights that are not here and cannot be downloaded."""
    return f"{urlparse(url).hostname or url} cannot be reached (offline?)"


def locate(cache_path: Path, url: str, candidates: tuple[Path, ...] = ()) -> tuple[Path | None, bool, str]:
    """(found_at, can_download, why_not) for weights kept at `cache_path` (or at one of `candidates`,
    looked at first) and downloaded from `url`."""
    for path in (*candidates, cache_path):
        if path.is_file():
            return path.resolve(), False, ""
    if host_reachable(url):
        return None, True, ""
    return None, False, f"not in {cache_path.parent} and {offline_reason(url)}"
