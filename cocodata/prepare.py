"""Turn whatever the user pointed at into a validated, normalised, cached PreparedDataset.

Runs once per experiment, before any trial: find the splits, read every file once and hash it
all; when that hash was prepared before, return it at once. Otherwise validate (every finding in
one pass), split when there is no val, and write the normalised COCO JSONs plus the layouts the
adapter asked for (`DataLayout`: a framework's own form of the data) into a temporary directory
that is moved into place in one rename.

Datasets in a framework's own format (`NativeSource`, e.g. an Ultralytics dataset YAML) come in
through readers the registry supplies; this module knows no framework.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from segtune.cocodata import cache, orientation
from segtune.cocodata.coco import CocoFile, check_categories_match, check_coco, load_coco
from segtune.cocodata.findings import Findings
from segtune.cocodata.ground_truth import has_zero_based_ids, normalise
from segtune.cocodata.images import ImageInfo, scan_images
from segtune.cocodata.layouts import DataLayout, NativeReader, NativeSource
from segtune.cocodata.split import split_image_ids
from segtune.cocodata.synthetic import GENERATOR_VERSION, make_demo_dataset
from segtune.core.errors import DataError
from segtune.core.record import PreparedDataset

__all__ = ["DEMO_PARAMS", "DataLayout", "NativeSource", "demo_dir_name", "prepare_dataset"]

DEMO_PARAMS: dict[str, Any] = {
    "n_train": 64,
    "n_val": 16,
    "image_size": 128,
    "seed": 0,
    "objects_per_image": (1, 3),
}
VAL_SPLIT_NAMES = ("val", "valid", "validation")
FEW_ANNOTATIONS = 5  # fewer train annotations than this: a class too small to learn or to score

Log = Callable[[str], None]


def demo_dir_name(params: Mapping[str, Any] = DEMO_PARAMS) -> str:
    lo, hi = params["objects_per_image"]
    return (
        f"demo-v{GENERATOR_VERSION}-n{params['n_train']}x{params['n_val']}-s{params['image_size']}"
        f"-seed{params['seed']}-o{lo}-{hi}"
    )


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
    layouts: Sequence[DataLayout] = (),
    readers: Sequence[NativeReader] = (),
    log: Log = print,
) -> PreparedDataset:
    """Validate and convert a dataset once; later calls with the same content return the cached result.

    `data` is a COCO dataset folder (images/<split>/, annotations/instances_<split>.json) or a file
    one of `readers` understands (e.g. an Ultralytics dataset YAML); or give the JSON and image-folder
    paths explicitly; or nothing, for the embedded synthetic demo set. Without a val split,
    `val_fraction` of the images become val (seeded). `layouts` are written besides the COCO JSONs.
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
        native = _read_native(data, readers)
        if native is not None:
            return _prepare_native(native, cache_dir, layouts, log)
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
    return _prepare_coco(source, val_fraction, seed, cache_dir, layouts, log)


@dataclasses.dataclass(frozen=True)
class _CocoSource:
    name: str
    train_json: Path
    train_images: Path
    val_json: Path | None
    val_images: Path | None


def _read_native(data: Path, readers: Sequence[NativeReader]) -> NativeSource | None:
    if not data.is_file():
        return None
    for read in readers:
        source = read(data)
        if source is not None:
            return source
    return None


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
            return _CocoSource(
                root.name,
                train_json,
                root / "images" / "train",
                annotations / f"instances_{split}.json",
                root / "images" / split,
            )
    return _CocoSource(root.name, train_json, root / "images" / "train", None, None)


def _prepare_coco(
    source: _CocoSource, val_fraction: float, seed: int, cache_dir: Path, layouts: Sequence[DataLayout], log: Log
) -> PreparedDataset:
    findings = Findings()
    train_json, val_json = source.train_json, source.val_json
    # Both files may have one name (Roboflow's train/_annotations.coco.json): then name their folders too.
    same_name = val_json is not None and val_json.name == train_json.name
    train = load_coco(
        train_json,
        source.train_images.expanduser().resolve(),
        findings,
        f"{train_json.parent.name}/{train_json.name}" if same_name else train_json.name,
    )
    val = None
    if val_json is not None and source.val_images is not None:
        val = load_coco(
            val_json,
            source.val_images.expanduser().resolve(),
            findings,
            f"{val_json.parent.name}/{val_json.name}" if same_name else val_json.name,
        )
    findings.raise_if_errors(log)
    assert train is not None
    files = [train] + ([val] if val is not None else [])
    infos = _scan(files)

    split_params = {} if val is not None else {"val_fraction": val_fraction, "seed": seed}
    parts = [f.raw for f in files] + [i.digest or b"missing" for per_file in infos for i in per_file.values()]
    content_hash = cache.content_hash(parts, {"kind": "coco", **split_params})
    out = cache_dir / "datasets" / content_hash[:16]
    val_dir = val.images_dir if val is not None else train.images_dir
    if (hit := cache.cached_entry(out, layouts, train.images_dir, val_dir)) is not None:
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
            raise DataError(f"{train.label}: {exc}; add a val split (annotations/instances_val.json)") from exc
        log(
            f"no val split given: {len(val_ids)} of {len(train.data['images'])} images drawn for val "
            f"(val_fraction={val_fraction}, seed={seed})"
        )
        train_coco, val_coco = normalise(train.data, train_ids), normalise(train.data, val_ids)
    else:
        train_coco, val_coco = normalise(train.data), normalise(val.data)
    _warn_zero_annotation_ids(files, findings)

    categories = {c["id"]: c["name"] for c in train.data["categories"]}
    counts = _category_warnings(categories, train_coco, val_coco, findings, indexed_by_yaml=False)
    # Class indices are contiguous over the categories that have annotations (placeholders drop out).
    category_ids = tuple(sorted(c for c in categories if counts[c] > 0))
    names = tuple(categories[c] for c in category_ids)
    splits = {"train": (train_coco, train.images_dir), "val": (val_coco, val_dir)}
    # Images with an EXIF orientation: each split that has some is read from a folder in the entry.
    split_infos = {"train": infos[0], "val": infos[1] if val is not None else infos[0]}
    oriented = {}
    for split, (coco, images_dir) in splits.items():
        if views := orientation.tagged_views(coco, split_infos[split]):
            oriented[split] = (orientation.take_sources(coco, images_dir), views)
    images_at = {split: out / orientation.FOLDER / split if split in oriented else splits[split][1] for split in splits}

    def build(tmp: Path) -> dict[str, Path]:
        read_from = dict(splits)
        for split, (sources, views) in oriented.items():
            folder = orientation.image_folder(tmp, split, splits[split][0], sources, views, cache_dir)
            read_from[split] = (splits[split][0], folder)  # links resolve to files outside `tmp`
        return {layout.name: layout.write(tmp, out, read_from, category_ids, names) for layout in layouts}

    result = PreparedDataset(
        name=source.name,
        content_hash=content_hash,
        train_json=out / "train.json",
        train_images=images_at["train"],
        val_json=out / "val.json",
        val_images=images_at["val"],
        category_ids=category_ids,
        category_names=names,
        train_images_source=train.images_dir if "train" in oriented else None,
        val_images_source=val_dir if "val" in oriented else None,
    )
    return cache.write_entry(out, result, train_coco, val_coco, findings, build, log)


def _prepare_native(source: NativeSource, cache_dir: Path, layouts: Sequence[DataLayout], log: Log) -> PreparedDataset:
    """A dataset in a framework's own format: hashed, converted to COCO ground truth (for the one
    evaluator, and for adapters that train on COCO), its own layout kept as it is."""
    content_hash = cache.content_hash(source.hash_parts, {"kind": f"native-{source.layout}", **source.hash_params})
    out = cache_dir / "datasets" / content_hash[:16]
    if (hit := cache.cached_entry(out, layouts, source.train_images, source.val_images)) is not None:
        return _reuse(hit, out, log)

    findings = Findings()
    train_coco, val_coco = source.to_coco(findings)
    for split, coco in (("train", train_coco), ("val", val_coco)):
        if not coco["annotations"]:
            findings.error(
                f"{source.label} ({split})",
                "no-annotations",
                "no image has polygon labels",
                "put the label files in the labels/ folder parallel to images/",
            )
    categories = dict(enumerate(source.category_names))
    _category_warnings(categories, train_coco, val_coco, findings, indexed_by_yaml=True)
    findings.raise_if_errors(log)
    train_coco, val_coco = normalise(train_coco), normalise(val_coco)
    # The format fixes the class indices: category id = class index, empty classes included.
    category_ids = tuple(range(len(source.category_names)))
    splits = {"train": (train_coco, source.train_images), "val": (val_coco, source.val_images)}

    def build(tmp: Path) -> dict[str, Path]:
        written = {source.layout: source.write_layout(tmp, out)}
        for layout in layouts:
            if layout.name not in written:
                written[layout.name] = layout.write(tmp, out, splits, category_ids, source.category_names)
        return written

    result = PreparedDataset(
        name=source.name,
        content_hash=content_hash,
        train_json=out / "train.json",
        train_images=source.train_images,
        val_json=out / "val.json",
        val_images=source.val_images,
        category_ids=category_ids,
        category_names=source.category_names,
    )
    return cache.write_entry(out, result, train_coco, val_coco, findings, build, log)


def _scan(files: Sequence[CocoFile]) -> list[dict[int, ImageInfo]]:
    """Read every image of every file in one thread pool; per file, image id -> ImageInfo."""
    id_paths = [f.image_paths() for f in files]
    infos = scan_images([p for paths in id_paths for p in paths.values()])
    out, start = [], 0
    for paths in id_paths:
        out.append(dict(zip(paths, infos[start : start + len(paths)])))
        start += len(paths)
    return out


def _reuse(prepared: PreparedDataset, out: Path, log: Log) -> PreparedDataset:
    note = f" ({len(prepared.warnings)} data warnings recorded in prepared.json)" if prepared.warnings else ""
    log(f"reusing prepared dataset {out}{note}")
    return prepared


def _warn_zero_annotation_ids(files: Sequence[CocoFile], findings: Findings) -> None:
    """Say so when annotation ids start at 0 (as in Roboflow exports): `normalise` renumbered them."""
    zero_based = [f.label for f in files if has_zero_based_ids(f.data)]
    if zero_based:
        findings.warn(
            ", ".join(zero_based),
            "annotation-id-0",
            "annotation ids start at 0",
            "they are shifted to start at 1 in the normalised JSONs (pycocotools counts a match with "
            "id 0 as a miss); image and category ids are kept",
        )


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
            fix = (
                "the model keeps a class for it that it can never learn"
                if indexed_by_yaml
                else "it gets no class index (export placeholders, like Roboflow's id 0, look like this)"
            )
            findings.warn("categories", "empty-category", f"{label} has no annotations", fix, name=cat_name)
        elif n_train == 0:
            findings.warn(
                "categories",
                "val-only-category",
                f"{label} has {n_val} val annotation(s) but none in train",
                "the model cannot learn it; add train examples",
                name=cat_name,
            )
        elif n_train < FEW_ANNOTATIONS or n_val == 0:
            findings.warn(
                "categories",
                "sparse-category",
                f"{label} has only {n_train} train and {n_val} val annotation(s)",
                "too few to learn or to score reliably; add examples or drop the category",
                name=cat_name,
            )
    return train_counts + val_counts
