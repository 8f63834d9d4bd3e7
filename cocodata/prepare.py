"""Turn whatever the user pointed at into a validated, converted, cached PreparedDataset.

Runs once per experiment, before any trial: find the splits, read every file once and hash it
all; when that hash was prepared before, return it at once. Otherwise validate (every finding in
one pass), split when there is no val, and write the normalised COCO JSONs (+ the Ultralytics
layout) into a temporary directory that is moved into place in one rename.
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

from cocodata.coco import (
    CocoFile,
    DataError,
    Findings,
    ImageInfo,
    check_categories_match,
    check_coco,
    load_coco,
    normalise,
    scan_images,
)
from cocodata.prepared import PreparedDataset
from cocodata.split import split_image_ids
from cocodata.synthetic import GENERATOR_VERSION, make_demo_dataset

__all__ = ["DEMO_PARAMS", "DataError", "demo_dir_name", "prepare_dataset"]

CONVERTER_VERSION = 1  # bump when conversion output changes: older cache entries are then ignored
DEMO_PARAMS: dict[str, Any] = {
    "n_train": 64, "n_val": 16, "image_size": 128, "seed": 0, "objects_per_image": (1, 3),
}
VAL_SPLIT_NAMES = ("val", "valid", "validation")
FEW_ANNOTATIONS = 5  # fewer train annotations than this: a class too small to learn or to score

Log = Callable[[str], None]


def demo_dir_name(params: Mapping[str, Any] = DEMO_PARAMS) -> str:
    lo, hi = params["objects_per_image"]
    return (f"demo-v{GENERATOR_VERSION}-n{params['n_train']}x{params['n_val']}-s{params['image_size']}"
            f"-seed{params['seed']}-o{lo}-{hi}")


def prepare_dataset(
    data: Path | None = None,
    *,
    train_json: Path | None = None,
    train_images: Path | None = None,
    val_json: Path | None = None,
    val_images: Path | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    cache_dir: Path,
    need_yolo: bool = True,
    log: Log = print,
) -> PreparedDataset:
    """Validate and convert a dataset once; later calls with the same content return the cached result.

    `data` is a COCO dataset folder (images/<split>/, annotations/instances_<split>.json) or an
    Ultralytics dataset YAML; or give the JSON and image-folder paths explicitly; or nothing, for
    the embedded synthetic demo set. Without a val split, `val_fraction` of the images become val
    (seeded). `need_yolo` adds the Ultralytics layout (YAML input always has its data.yaml).
    """
    cache_dir = Path(cache_dir).expanduser().resolve()
    explicit = (train_json, train_images, val_json, val_images)
    if data is not None and any(p is not None for p in explicit):
        raise DataError("give either a dataset (data) or explicit train/val paths, not both")
    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    if data is None and all(p is None for p in explicit):
        data = make_demo_dataset(cache_dir / demo_dir_name(), **DEMO_PARAMS)

    if data is not None:
        data = Path(data).expanduser().absolute()
        if data.suffix.lower() in (".yaml", ".yml") and data.is_file():
            return _prepare_yolo(data, cache_dir, log)
        source = _coco_layout(data)
    else:
        if train_json is None or train_images is None:
            raise DataError("explicit paths need both train_json and train_images")
        if (val_json is None) != (val_images is None):
            raise DataError("give val_json and val_images together (or neither, for a seeded split of train)")
        train_json = Path(train_json).expanduser().absolute()
        is_standard = train_json.parent.name == "annotations"
        source = _CocoSource(
            name=train_json.parent.parent.name if is_standard else train_json.stem,
            train_json=train_json,
            train_images=Path(train_images),
            val_json=None if val_json is None else Path(val_json).expanduser().absolute(),
            val_images=None if val_images is None else Path(val_images),
        )
    return _prepare_coco(source, val_fraction, seed, cache_dir, need_yolo, log)


@dataclasses.dataclass(frozen=True)
class _CocoSource:
    name: str
    train_json: Path
    train_images: Path
    val_json: Path | None
    val_images: Path | None


def _coco_layout(root: Path) -> _CocoSource:
    """The splits of a COCO dataset folder; val may be absent (then it is split off train)."""
    layout = "a COCO folder (images/<split>/, annotations/instances_<split>.json) or an Ultralytics .yaml"
    if not root.is_dir():
        raise DataError(f"{root}: no such dataset folder or YAML file; pass {layout}")
    annotations = root / "annotations"
    train_json = annotations / "instances_train.json"
    if not train_json.is_file():
        found = sorted(p.name for p in annotations.glob("*.json")) if annotations.is_dir() else []
        found_text = found or "no annotations folder"
        raise DataError(f"{root}: no annotations/instances_train.json (found {found_text}); pass {layout}")
    for split in VAL_SPLIT_NAMES:
        if (annotations / f"instances_{split}.json").is_file():
            return _CocoSource(root.name, train_json, root / "images" / "train",
                               annotations / f"instances_{split}.json", root / "images" / split)
    return _CocoSource(root.name, train_json, root / "images" / "train", None, None)


def _prepare_coco(source: _CocoSource, val_fraction: float, seed: int, cache_dir: Path, need_yolo: bool,
                  log: Log) -> PreparedDataset:
    findings = Findings()
    train_json, val_json = source.train_json, source.val_json
    # Both files may have one name (Roboflow's train/_annotations.coco.json): then name their folders too.
    same_name = val_json is not None and val_json.name == train_json.name
    train = load_coco(train_json, source.train_images.expanduser().resolve(), findings,
                      f"{train_json.parent.name}/{train_json.name}" if same_name else train_json.name)
    val = None
    if val_json is not None and source.val_images is not None:
        val = load_coco(val_json, source.val_images.expanduser().resolve(), findings,
                        f"{val_json.parent.name}/{val_json.name}" if same_name else val_json.name)
    findings.raise_if_errors(log)
    assert train is not None
    files = [train] + ([val] if val is not None else [])
    infos = _scan(files)

    split_params = {} if val is not None else {"val_fraction": val_fraction, "seed": seed}
    parts = [f.raw for f in files] + [i.digest or b"missing" for per_file in infos for i in per_file.values()]
    content_hash = _digest(parts, {"kind": "coco", **split_params})
    out = cache_dir / "datasets" / content_hash[:16]
    val_dir = val.images_dir if val is not None else train.images_dir
    if (hit := _cached(out, need_yolo, train.images_dir, val_dir)) is not None:
        return _reuse(hit, out, log)

    check_coco(train, infos[0], findings, split="train")
    if val is not None:
        check_coco(val, infos[1], findings, split="val")
        check_categories_match(train, val, findings)
    findings.raise_if_errors(log)

    if val is None:
        try:
            train_ids, val_ids = split_image_ids(train.data, val_fraction, seed)
        except ValueError as exc:
            raise DataError(f"{train.label}: {exc}; add a val split (annotations/instances_val.json)"
                            ) from exc
        log(f"no val split given: {len(val_ids)} of {len(train.data['images'])} images drawn for val "
            f"(val_fraction={val_fraction}, seed={seed})")
        train_coco, val_coco = normalise(train.data, train_ids), normalise(train.data, val_ids)
    else:
        train_coco, val_coco = normalise(train.data), normalise(val.data)
    _fix_zero_annotation_ids(files, train_coco, val_coco, findings)

    categories = {c["id"]: c["name"] for c in train.data["categories"]}
    counts = _category_warnings(categories, train_coco, val_coco, findings, indexed_by_yaml=False)
    # Class indices are contiguous over the categories that have annotations (placeholders drop out).
    category_ids = tuple(sorted(c for c in categories if counts[c] > 0))
    names = tuple(categories[c] for c in category_ids)

    def build(tmp: Path) -> Path | None:
        if not need_yolo:
            return None
        from cocodata.to_yolo import write_yolo_layout

        splits = {"train": (train_coco, train.images_dir), "val": (val_coco, val_dir)}
        return write_yolo_layout(tmp, out, splits, category_ids, names)

    result = PreparedDataset(
        name=source.name, content_hash=content_hash,
        train_json=out / "train.json", train_images=train.images_dir,
        val_json=out / "val.json", val_images=val_dir,
        category_ids=category_ids, category_names=names,
    )
    return _write(out, result, train_coco, val_coco, findings, build, log)


def _prepare_yolo(yaml_path: Path, cache_dir: Path, log: Log) -> PreparedDataset:
    from cocodata.yolo_yaml import (
        images_root,
        read_labels,
        read_yolo_yaml,
        write_data_yaml,
        write_image_list,
        yolo_split_to_coco,
    )

    source = read_yolo_yaml(yaml_path)
    train_paths, val_paths = source.images["train"], source.images["val"]
    infos = scan_images(train_paths + val_paths)
    labels = read_labels(train_paths + val_paths)
    parts: list[bytes] = [source.raw, "\n".join(source.names).encode()]
    for path, info, label in zip(train_paths + val_paths, infos, labels):
        parts += [str(path).encode(), info.digest or b"missing", b"none" if label is None else label]
    content_hash = _digest(parts, {"kind": "yolo-yaml", "train_count": len(train_paths)})
    out = cache_dir / "datasets" / content_hash[:16]
    if (hit := _cached(out, True, images_root(train_paths), images_root(val_paths))) is not None:
        return _reuse(hit, out, log)

    findings = Findings()
    n = len(train_paths)
    train_coco, train_dir = yolo_split_to_coco(source, "train", infos[:n], labels[:n], findings)
    val_coco, val_dir = yolo_split_to_coco(source, "val", infos[n:], labels[n:], findings)
    for split, coco in (("train", train_coco), ("val", val_coco)):
        if not coco["annotations"]:
            findings.error(f"{yaml_path.name} ({split})", "no-annotations", "no image has polygon labels",
                           "put the label files in the labels/ folder parallel to images/")
    _category_warnings(dict(enumerate(source.names)), train_coco, val_coco, findings, indexed_by_yaml=True)
    findings.raise_if_errors(log)

    def build(tmp: Path) -> Path:
        # Absolute image lists: Ultralytics reads relative entries against the cwd, which Ray changes.
        write_image_list(tmp / "train.txt", train_paths)
        write_image_list(tmp / "val.txt", val_paths)
        splits = {"train": str(out / "train.txt"), "val": str(out / "val.txt")}
        write_data_yaml(tmp / "data.yaml", source.root, splits, source.names)
        return out / "data.yaml"

    result = PreparedDataset(
        name=yaml_path.parent.name if yaml_path.stem in ("data", "dataset") else yaml_path.stem,
        content_hash=content_hash,
        train_json=out / "train.json", train_images=train_dir,
        val_json=out / "val.json", val_images=val_dir,
        # The YAML fixes the class indices: category id = class index, empty classes included.
        category_ids=tuple(range(len(source.names))), category_names=source.names,
    )
    return _write(out, result, train_coco, val_coco, findings, build, log)


def _scan(files: Sequence[CocoFile]) -> list[dict[int, ImageInfo]]:
    """Read every image of every file in one thread pool; per file, image id -> ImageInfo."""
    id_paths = [f.image_paths() for f in files]
    infos = scan_images([p for paths in id_paths for p in paths.values()])
    out, start = [], 0
    for paths in id_paths:
        out.append(dict(zip(paths, infos[start:start + len(paths)])))
        start += len(paths)
    return out


def _digest(parts: Sequence[bytes], params: Mapping[str, Any]) -> str:
    hasher = hashlib.blake2b(digest_size=32)
    hasher.update(json.dumps({"converter": CONVERTER_VERSION, **params}, sort_keys=True).encode())
    for part in parts:
        hasher.update(len(part).to_bytes(8, "little"))  # length-prefixed: no two sequences hash alike
        hasher.update(part)
    return hasher.hexdigest()


def _cached(out: Path, need_yolo: bool, train_images: Path, val_images: Path) -> PreparedDataset | None:
    """The prepared dataset in `out` if it is complete and was made from images in the same place."""
    try:
        prepared = PreparedDataset.load(out / "prepared.json")
    except (OSError, ValueError, TypeError, KeyError):
        return None
    if need_yolo and (prepared.yolo_yaml is None or not prepared.yolo_yaml.is_file()):
        return None
    if (prepared.train_images, prepared.val_images) != (train_images, val_images):
        return None  # the same bytes elsewhere on disk: links and paths in `out` point at the other copy
    return prepared


def _reuse(prepared: PreparedDataset, out: Path, log: Log) -> PreparedDataset:
    note = f" ({len(prepared.warnings)} data warnings recorded in prepared.json)" if prepared.warnings else ""
    log(f"reusing prepared dataset {out}{note}")
    return prepared


def _fix_zero_annotation_ids(files: Sequence[CocoFile], train_coco: dict[str, Any], val_coco: dict[str, Any],
                             findings: Findings) -> None:
    """Shift annotation ids to start at 1 when they start at 0 (as in Roboflow exports).

    pycocotools records a match by storing the matched GT's annotation id, 0 meaning "unmatched":
    a match with GT id 0 counts as a false positive. Nothing refers to annotation ids otherwise;
    image and category ids, which predictions use, are kept.
    """
    zero_based = [f.label for f in files if min((a["id"] for a in f.data["annotations"]), default=1) < 1]
    if not zero_based:
        return
    findings.warn(", ".join(zero_based), "annotation-id-0", "annotation ids start at 0",
                  "they are shifted to start at 1 in the normalised JSONs (pycocotools counts a match with "
                  "id 0 as a miss); image and category ids are kept")
    cocos = (train_coco, val_coco)
    lowest = min(a["id"] for coco in cocos for a in coco["annotations"])
    for coco in cocos:
        for ann in coco["annotations"]:
            ann["id"] += 1 - lowest


def _category_warnings(
    categories: Mapping[int, str],
    train_coco: Mapping[str, Any],
    val_coco: Mapping[str, Any],
    findings: Findings,
    *,
    indexed_by_yaml: bool,
) -> Counter[int]:
    """Warn about categories without (enough) annotations; return annotations per category."""
    train_counts = Counter(a["category_id"] for a in train_coco["annotations"])
    val_counts = Counter(a["category_id"] for a in val_coco["annotations"])
    for cat_id, cat_name in categories.items():
        n_train, n_val = train_counts[cat_id], val_counts[cat_id]
        label = f"category {cat_id} ({cat_name!r})"
        if n_train + n_val == 0:
            fix = ("the model keeps a class for it that it can never learn" if indexed_by_yaml else
                   "it gets no class index (export placeholders, like Roboflow's id 0, look like this)")
            findings.warn("categories", "empty-category", f"{label} has no annotations", fix, name=cat_name)
        elif n_train == 0:
            findings.warn("categories", "val-only-category", f"{label} has {n_val} val annotation(s) but "
                          "none in train", "the model cannot learn it; add train examples", name=cat_name)
        elif n_train < FEW_ANNOTATIONS or n_val == 0:
            findings.warn("categories", "sparse-category", f"{label} has only {n_train} train and {n_val} "
                          "val annotation(s)", "too few to learn or to score reliably; add examples or drop "
                          "the category", name=cat_name)
    return train_counts + val_counts


def _write(out: Path, result: PreparedDataset, train_coco: dict[str, Any], val_coco: dict[str, Any],
           findings: Findings, build: Callable[[Path], Path | None], log: Log) -> PreparedDataset:
    """Write everything into a temporary sibling of `out`, then move it into place in one rename."""
    warnings = findings.warnings
    for line in warnings:
        log(f"data warning: {line}")
    # Per split: train and val may number their images alike.
    max_objects = max(max(Counter(a["image_id"] for a in coco["annotations"]).values(), default=0)
                      for coco in (train_coco, val_coco))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        tmp.chmod(0o755)  # mkdtemp makes it private; the result is an ordinary shared directory
        (tmp / "train.json").write_text(json.dumps(train_coco))
        (tmp / "val.json").write_text(json.dumps(val_coco))
        prepared = dataclasses.replace(
            result,
            yolo_yaml=build(tmp),
            num_train_images=len(train_coco["images"]),
            num_val_images=len(val_coco["images"]),
            warnings=tuple(warnings),
            max_objects_per_image=max_objects,
        )
        prepared.save(tmp / "prepared.json")
        _move_into_place(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"prepared dataset {out}: {prepared.num_train_images} train / {prepared.num_val_images} val images, "
        f"{prepared.num_classes} classes ({', '.join(prepared.category_names)}), "
        f"up to {prepared.max_objects_per_image} objects per image")
    return prepared


def _move_into_place(tmp: Path, out: Path) -> None:
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
