"""Ultralytics dataset YAMLs as input: `--data my_data.yaml`, and writing one.

A YOLO dataset is trained on as it is, through a rewritten YAML with absolute paths; its labels
are converted to COCO JSON only so that every framework is scored by the same COCO evaluator (and
Mask R-CNN can train on it too). `read_native` is the reader the registry hands to
`cocodata.prepare.prepare_dataset`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from segtune.cocodata import masks
from segtune.cocodata.findings import Findings
from segtune.cocodata.images import ImageInfo, exif_warning, scan_images
from segtune.cocodata.prepare import NativeSource
from segtune.core.errors import DataError

LAYOUT = "ultralytics"  # the name of this framework's data layout (see trainers.yolo.layout)
COORD_TOLERANCE = 0.01  # Ultralytics accepts points up to 1.01 (and clips); so do we


@dataclass(frozen=True)
class YoloSource:
    """A parsed dataset YAML: its root, class names and the image files of train and val."""

    yaml_path: Path
    raw: bytes
    root: Path
    names: tuple[str, ...]
    images: dict[str, list[Path]]  # "train"/"val" -> absolute image paths (links not resolved)


def read_yolo_yaml(yaml_path: Path) -> YoloSource:
    """Parse an Ultralytics dataset YAML and list its images; DataError for anything unusable."""
    import yaml

    where = yaml_path.name
    try:
        raw = yaml_path.read_bytes()
        spec = yaml.safe_load(raw)
    except OSError as exc:
        raise DataError(f"{where}: cannot be read ({exc}); check the path") from exc
    except yaml.YAMLError as exc:
        problem = " ".join(str(exc).split())
        raise DataError(f"{where}: is not valid YAML ({problem}); repair the file") from exc
    if not isinstance(spec, dict):
        raise DataError(f"{where}: is not an Ultralytics dataset YAML; it needs the keys path, train, val and names")
    for key in ("train", "val"):
        if not spec.get(key):
            raise DataError(
                f"{where}: has no '{key}' entry; add '{key}: images/{key}' (a folder or a .txt list of images)"
            )
    names = _names(spec, where)
    root = _root(spec, yaml_path)
    images = {split: _list_images(spec[split], root, where, split) for split in ("train", "val")}
    return YoloSource(yaml_path, raw, root, names, images)


def _names(spec: Mapping[str, Any], where: str) -> tuple[str, ...]:
    names = spec.get("names")
    if names is None and isinstance(spec.get("nc"), int):
        return tuple(f"class_{i}" for i in range(spec["nc"]))
    if isinstance(names, list) and names:
        return tuple(str(n) for n in names)
    if isinstance(names, dict) and names:
        try:
            by_index = {int(k): str(v) for k, v in names.items()}
        except (TypeError, ValueError):
            by_index = {}
        if sorted(by_index) == list(range(len(by_index))):
            return tuple(by_index[i] for i in range(len(by_index)))
    raise DataError(
        f"{where}: 'names' must list the class names (a list, or {{0: name, 1: name, ...}} "
        f"with indices 0..n-1); got {names!r}"
    )


def _root(spec: Mapping[str, Any], yaml_path: Path) -> Path:
    """The dataset root: `path` as Ultralytics reads it (cwd), or else next to the YAML."""
    given = spec.get("path")
    if given and Path(str(given)).expanduser().is_absolute():
        candidates = [Path(str(given)).expanduser()]
    else:
        rel = Path(str(given)) if given else Path(".")
        candidates = [Path.cwd() / rel, yaml_path.resolve().parent / rel]
    first_train = spec["train"][0] if isinstance(spec["train"], list) else spec["train"]
    for candidate in candidates:
        if (candidate / str(first_train)).exists():
            return candidate.resolve()
    tried = " or ".join(str(c / str(first_train)) for c in candidates)
    raise DataError(f"{yaml_path.name}: train images not found at {tried}; fix 'path' (the dataset root) or 'train'")


def _list_images(entry: str | list[str], root: Path, where: str, split: str) -> list[Path]:
    found: list[str] = []
    from ultralytics.data.utils import IMG_FORMATS

    for item in entry if isinstance(entry, list) else [entry]:
        path = root / str(item)
        if path.is_dir():
            found += [str(p) for p in path.rglob("*") if p.suffix[1:].lower() in IMG_FORMATS and p.is_file()]
        elif path.is_file() and path.suffix == ".txt":
            for line in path.read_text(encoding="utf-8-sig").splitlines():
                line = line.strip()
                if not line:
                    continue
                # "./x" is relative to the list (Ultralytics' rule); other relative entries to the root.
                image = path.parent / line[2:] if line.startswith("./") else root / line
                if image.suffix[1:].lower() in IMG_FORMATS:
                    found.append(os.path.abspath(image))
        else:
            raise DataError(
                f"{where}: {split} entry {item!r} is neither a folder nor a .txt list at {path}; fix '{split}'"
            )
    if not found:
        raise DataError(f"{where}: no images found for {split} ({entry!r} under {root}); fix '{split}'")
    return [Path(p) for p in sorted(set(found))]


def label_path(image: Path) -> Path:
    """Ultralytics' own rule: the last /images/ becomes /labels/, the suffix .txt."""
    from ultralytics.data.utils import img2label_paths

    return Path(img2label_paths([os.fspath(image)])[0])


def read_labels(images: Sequence[Path]) -> list[bytes | None]:
    """Each image's label file contents; None where there is none (a background image)."""
    out: list[bytes | None] = []
    for image in images:
        try:
            out.append(label_path(image).read_bytes())
        except FileNotFoundError:
            out.append(None)
    return out


def images_root(paths: Sequence[Path]) -> Path:
    """The deepest folder holding all of `paths`: COCO file_names are relative to it."""
    return Path(os.path.commonpath([str(p.parent) for p in paths]))


def yolo_split_to_coco(
    source: YoloSource,
    split: str,
    infos: Sequence[ImageInfo],
    labels: Sequence[bytes | None],
    findings: Findings,
) -> tuple[dict[str, Any], Path]:
    """COCO ground truth for one split (image ids 1.., category id = class index) and its image folder.

    Polygons are denormalised with each image's size as Ultralytics sees it (EXIF rotation applied).
    """
    where = f"{source.yaml_path.name} ({split})"
    paths = source.images[split]
    images_dir = images_root(paths)
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for index, (path, info, label) in enumerate(zip(paths, infos, labels)):
        rel = path.relative_to(images_dir).as_posix()
        if info.error or info.display_size is None:
            kind = "missing-file" if info.error == "missing" else "unreadable-file"
            findings.error(
                where, kind, f"image {path} is {info.error}", "restore it or remove it from the list", name=rel
            )
            continue
        width, height = info.display_size
        image_id = index + 1
        images.append({"id": image_id, "file_name": rel, "width": width, "height": height})
        if info.transformed:
            findings.warn(where, "exif", exif_warning(rel, info.orientation), name=rel)
        found = 0
        for lineno, line in enumerate((label or b"").decode("utf-8", "replace").splitlines(), 1):
            at = f"{label_path(path).name} line {lineno}"
            parsed = _parse_line(line, len(source.names), at, where, findings)
            if parsed is None:
                continue
            class_index, polygon = parsed
            points = np.clip(polygon.reshape(-1, 2), 0.0, 1.0) * np.array([width, height])
            flat = [round(float(v), 3) for v in points.reshape(-1)]
            rle = masks.to_rle([flat], height, width)
            found += 1
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": class_index,
                    "segmentation": [flat],
                    "area": masks.area(rle),
                    "bbox": [round(v, 3) for v in masks.box_of(rle)],  # the mask's box, as COCO's
                    "iscrowd": 0,
                }
            )
        if not found:
            findings.warn(
                where, "background", f"image {rel} has no labels", "it is kept as a background image", name=rel
            )
    categories = [{"id": i, "name": n, "supercategory": ""} for i, n in enumerate(source.names)]
    coco = {
        "info": {"description": f"converted from {source.yaml_path}"},
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": categories,
    }
    return coco, images_dir


def _parse_line(line: str, num_classes: int, at: str, where: str, findings: Findings) -> tuple[int, np.ndarray] | None:
    """(class, normalised polygon) of one label line, or None (blank, or an error was recorded)."""
    parts = line.split()
    if not parts:
        return None
    try:
        values = [float(v) for v in parts]
    except ValueError:
        findings.error(where, "bad-line", f"{at} is not numbers", "fix or delete the line", name=at)
        return None
    cls, coords = values[0], np.array(values[1:])
    if not cls.is_integer() or not 0 <= cls < num_classes:
        findings.error(
            where,
            "bad-class",
            f"{at} has class {parts[0]}, but names lists {num_classes} classes (0..{num_classes - 1})",
            "fix the class or add the name",
            name=at,
        )
        return None
    if len(coords) == 4:
        findings.error(
            where,
            "box-label",
            f"{at} is a box (class cx cy w h), not a polygon",
            "a segmentation dataset needs 'class x1 y1 x2 y2 x3 y3 ...' lines",
            name=at,
        )
        return None
    if len(coords) % 2 or len(coords) < 6:
        findings.error(
            where,
            "short-polygon",
            f"{at} has {len(coords) / 2:g} points (a polygon needs >= 3 x,y pairs)",
            "fix or delete the line",
            name=at,
        )
        return None
    if not np.isfinite(coords).all() or coords.min() < -COORD_TOLERANCE or coords.max() > 1 + COORD_TOLERANCE:
        findings.error(
            where,
            "not-normalised",
            f"{at} has coordinates outside [0, 1]",
            "labels must be normalised by image width/height",
            name=at,
        )
        return None
    return int(cls), coords


def write_data_yaml(path: Path, root: Path, splits: Mapping[str, str | list[str]], names: Sequence[str]) -> None:
    """An Ultralytics dataset YAML with an absolute root, {index: name} names and no download key."""
    import yaml

    spec: dict[str, Any] = {"path": str(root)}
    spec.update(splits)
    spec["names"] = {i: str(n) for i, n in enumerate(names)}
    path.write_text(yaml.safe_dump(spec, sort_keys=False, allow_unicode=True))


def write_image_list(path: Path, images: Sequence[Path]) -> None:
    """A .txt list of absolute image paths: independent of the cwd (Ray changes it in every trial)."""
    path.write_text("".join(f"{p}\n" for p in images))


def read_native(path: Path) -> NativeSource | None:
    """An Ultralytics dataset YAML as a NativeSource for `prepare_dataset`; None for other files."""
    if path.suffix.lower() not in (".yaml", ".yml"):
        return None
    source = read_yolo_yaml(path)
    train_paths, val_paths = source.images["train"], source.images["val"]
    infos = scan_images(train_paths + val_paths)
    labels = read_labels(train_paths + val_paths)
    parts: list[bytes] = [source.raw, "\n".join(source.names).encode()]
    for image, info, label in zip(train_paths + val_paths, infos, labels):
        parts += [str(image).encode(), info.digest or b"missing", b"none" if label is None else label]
    n = len(train_paths)

    def to_coco(findings: Findings) -> tuple[dict[str, Any], dict[str, Any]]:
        train_coco, _ = yolo_split_to_coco(source, "train", infos[:n], labels[:n], findings)
        val_coco, _ = yolo_split_to_coco(source, "val", infos[n:], labels[n:], findings)
        return train_coco, val_coco

    def write_layout(build_dir: Path, final_dir: Path) -> Path:
        # Absolute image lists: Ultralytics reads relative entries against the cwd, which Ray changes.
        write_image_list(build_dir / "train.txt", train_paths)
        write_image_list(build_dir / "val.txt", val_paths)
        splits = {"train": str(final_dir / "train.txt"), "val": str(final_dir / "val.txt")}
        write_data_yaml(build_dir / "data.yaml", source.root, splits, source.names)
        return final_dir / "data.yaml"

    name = path.parent.name if path.stem in ("data", "dataset") else path.stem
    return NativeSource(
        name=name,
        label=path.name,
        layout=LAYOUT,
        hash_parts=parts,
        hash_params={"train_count": n},
        train_images=images_root(train_paths),
        val_images=images_root(val_paths),
        category_names=source.names,
        to_coco=to_coco,
        write_layout=write_layout,
    )
