"""Normalised COCO splits -> the Ultralytics layout: images/{split}/, labels/{split}/*.txt, data.yaml.

Images are symlinked (copied where links are not possible) under unique flat names, so the label
next to each image is found by Ultralytics' `/images/` -> `/labels/` rule.
"""

from __future__ import annotations

import os
import shutil
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from segtune.cocodata import masks
from segtune.cocodata.prepare import DataLayout
from segtune.trainers.yolo.dataset_yaml import LAYOUT, write_data_yaml


def write_yolo_layout(
    build_dir: Path,
    final_dir: Path,
    splits: Mapping[str, tuple[Mapping[str, Any], Path]],
    category_ids: Sequence[int],
    category_names: Sequence[str],
) -> Path:
    """Write the layout into `build_dir`; paths inside data.yaml point at `final_dir`, where it will be moved.

    `splits` maps a split name to (normalised COCO dict, folder its file_names are relative to).
    Returns the path data.yaml will have in `final_dir`.
    """
    index_of = {cat_id: index for index, cat_id in enumerate(category_ids)}
    for split, (coco, images_dir) in splits.items():
        image_out = build_dir / "images" / split
        label_out = build_dir / "labels" / split
        image_out.mkdir(parents=True)
        label_out.mkdir(parents=True)
        by_image: dict[int, list[Mapping[str, Any]]] = defaultdict(list)
        for ann in coco["annotations"]:
            by_image[ann["image_id"]].append(ann)
        used_stems: set[str] = set()
        for image in coco["images"]:
            name = flat_name(image["file_name"], image["id"], used_stems)
            link_or_copy(images_dir / image["file_name"], image_out / name)
            lines = [
                label_line(ann, index_of[ann["category_id"]], image["width"], image["height"])
                for ann in by_image.get(image["id"], ())
                if not ann.get("iscrowd")  # crowd regions are "ignore" areas: YOLO has no such notion
            ]
            text = "".join(f"{line}\n" for line in lines if line)
            # Background images get an empty label file: Ultralytics counts them as negatives.
            (label_out / (Path(name).stem + ".txt")).write_text(text)
    names = list(category_names)
    write_data_yaml(build_dir / "data.yaml", final_dir, {"train": "images/train", "val": "images/val"}, names)
    return final_dir / "data.yaml"


def flat_name(file_name: str, image_id: int, used_stems: set[str]) -> str:
    """A file name without folders, unique by stem (labels are named by stem), case-insensitively."""
    path = PurePosixPath(file_name.replace("\\", "/"))
    name = "__".join(part for part in path.parts if part not in ("", ".", "..", "/"))
    stem, suffix = Path(name).stem, Path(name).suffix
    if stem.lower() in used_stems:
        stem = f"{stem}__id{image_id}"
    used_stems.add(stem.lower())
    return stem + suffix


def link_or_copy(source: Path, target: Path) -> None:
    try:
        os.symlink(source.resolve(), target)
    except OSError:  # no symlinks here (some Windows setups, some network filesystems)
        shutil.copy2(source, target)


def label_line(ann: Mapping[str, Any], class_index: int, width: int, height: int) -> str:
    """`class x1 y1 x2 y2 ...` with coordinates normalised to [0, 1]; "" for an empty mask.

    Several polygons of one instance are joined into one with Ultralytics' own merge_multi_segment,
    as its COCO converter does.
    """
    polygons = masks.polygons_of(ann["segmentation"], height, width)  # an RLE instance is traced
    if not polygons:
        return ""
    if len(polygons) > 1:
        from ultralytics.data.converter import merge_multi_segment

        points = np.concatenate(merge_multi_segment(polygons), axis=0)
    else:
        points = np.asarray(polygons[0], dtype=np.float64).reshape(-1, 2)
    points = np.clip(points / np.array([width, height], dtype=np.float64), 0.0, 1.0)
    return f"{class_index} " + " ".join(f"{v:.6f}" for v in points.reshape(-1))


ULTRALYTICS_LAYOUT = DataLayout(LAYOUT, write_yolo_layout)
