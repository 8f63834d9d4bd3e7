"""The dataset cache: one directory per content hash, written completely or not at all.

A prepared dataset is written into a temporary sibling of its final directory and moved into
place in one rename, so a crash or Ctrl-C never leaves a half-written entry that a later run would
trust. Entries record the images' location: the same bytes elsewhere on disk make a new entry.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from segtune.cocodata.findings import Findings
from segtune.cocodata.layouts import DataLayout
from segtune.core.record import PreparedDataset

CONVERTER_VERSION = 3  # bump when conversion output changes: older cache entries are then ignored

Log = Callable[[str], None]


def content_hash(parts: Sequence[bytes], params: Mapping[str, Any]) -> str:
    hasher = hashlib.blake2b(digest_size=32)
    hasher.update(json.dumps({"converter": CONVERTER_VERSION, **params}, sort_keys=True).encode())
    for part in parts:
        hasher.update(len(part).to_bytes(8, "little"))  # length-prefixed: no two sequences hash alike
        hasher.update(part)
    return hasher.hexdigest()


def cached_entry(
    out: Path, layouts: Sequence[DataLayout], train_images: Path, val_images: Path
) -> PreparedDataset | None:
    """The prepared dataset in `out` if it is complete and was made from images in the same place."""
    try:
        prepared = PreparedDataset.load(out / "prepared.json")
    except (OSError, ValueError, TypeError, KeyError):
        return None
    if any(layout.name not in prepared.layouts or not prepared.layouts[layout.name].is_file() for layout in layouts):
        return None  # rebuilt with the missing layout (the COCO side is the same)
    sources = (prepared.train_images_source or prepared.train_images, prepared.val_images_source or prepared.val_images)
    if sources != (train_images, val_images):
        return None  # the same bytes elsewhere on disk: links and paths in `out` point at the other copy
    return prepared


def write_entry(
    out: Path,
    result: PreparedDataset,
    train_coco: dict[str, Any],
    val_coco: dict[str, Any],
    findings: Findings,
    build: Callable[[Path], dict[str, Path]],
    log: Log,
) -> PreparedDataset:
    """Write everything into a temporary sibling of `out`, then move it into place in one rename."""
    warnings = findings.warnings
    for line in warnings:
        log(f"data warning: {line}")
    # Per split: train and val may number their images alike.
    max_objects = max(
        max(Counter(a["image_id"] for a in coco["annotations"]).values(), default=0) for coco in (train_coco, val_coco)
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; the result is an ordinary shared directory
        (tmp / "train.json").write_text(json.dumps(train_coco))
        (tmp / "val.json").write_text(json.dumps(val_coco))
        prepared = dataclasses.replace(
            result,
            layouts=build(tmp),
            num_train_images=len(train_coco["images"]),
            num_val_images=len(val_coco["images"]),
            warnings=tuple(warnings),
            max_objects_per_image=max_objects,
        )
        prepared.save(tmp / "prepared.json")
        move_into_place(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log(
        f"prepared dataset {out}: {prepared.num_train_images} train / {prepared.num_val_images} val images, "
        f"{prepared.num_classes} classes ({', '.join(prepared.category_names)}), "
        f"up to {prepared.max_objects_per_image} objects per image"
    )
    return prepared


def move_into_place(tmp: Path, out: Path) -> None:
    try:
        os.replace(tmp, out)  # atomic; succeeds when `out` is absent (or an empty directory)
        return
    except OSError:
        pass
    # An older or incomplete entry (e.g. made without the YOLO layout): swap it out, then delete it.
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    os.replace(out, old)
    try:
        os.replace(tmp, out)
    finally:
        shutil.rmtree(old, ignore_errors=True)
