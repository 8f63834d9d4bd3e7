"""How adapters bring their own data formats to `cocodata` without it knowing any framework.

- `DataLayout`: a form of the data an adapter trains on besides the COCO JSONs (e.g. a framework's
  own folder layout), written once into the cached dataset by `prepare_dataset`.
- `NativeSource`: a dataset given in a framework's own format (`--data FILE`), read far enough to
  hash it; converted to COCO ground truth later, only when the cache does not have it yet.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segtune.cocodata.findings import Findings

# (build dir, final dir, {split: (normalised COCO dict, its images folder)}, category ids, names)
# -> the layout's entry file as it will be in the final dir.
LayoutWriter = Callable[[Path, Path, Mapping[str, tuple[dict[str, Any], Path]], Sequence[int], Sequence[str]], Path]


@dataclass(frozen=True)
class DataLayout:
    """A framework's own form of the data, declared by its adapter, written once beside the COCO JSONs."""

    name: str
    write: LayoutWriter


@dataclass(frozen=True)
class NativeSource:
    """A dataset in a framework's own format, read far enough to hash it (conversion comes later).

    Its category id is the class index, empty classes included; its own layout is written as it is
    (with absolute paths) rather than converted.
    """

    name: str
    label: str  # how messages name it, e.g. the YAML's file name
    layout: str
    hash_parts: Sequence[bytes]
    hash_params: Mapping[str, Any]
    train_images: Path  # the folders the COCO file_names are relative to
    val_images: Path
    category_names: tuple[str, ...]
    to_coco: Callable[[Findings], tuple[dict[str, Any], dict[str, Any]]]  # (train, val) ground truth
    write_layout: Callable[[Path, Path], Path]  # (build dir, final dir) -> entry file in the final dir


NativeReader = Callable[[Path], "NativeSource | None"]  # None: not a file this reader understands
