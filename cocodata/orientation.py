"""Photos with an EXIF orientation tag: which pixels the annotations describe, written once without
the tag, so that every framework reads exactly those pixels.

A phone stores a portrait photo's pixels sideways and says so in EXIF. Loaders differ on the tag
(OpenCV, and so Ultralytics, and Detectron2's `read_image` apply it; PIL's `Image.open` does not),
and so do labelling tools: some annotate the upright view, some the stored pixels. The COCO file's
width/height tells which, per image:
- the stored size (and not the turned one): the stored pixels;
- the turned size: the upright view (the tag applied);
- both (a square image, or a tag that only mirrors or turns by 180 degrees): the upright view,
  as photo viewers and most labelling tools show it (a warning says so);
- neither: an error, reported by `cocodata.coco.check_coco` before anything is written.

The chosen view of each tagged image is written once per image content as a PNG without the tag
(`<cache>/oriented/<digest>-<view>.png`: lossless, so exactly the pixels the annotations describe),
and each split with such images gets a folder of links in its dataset entry (`coco_images/<split>/`,
the same file names as the user's folder): to the written file for tagged images, to the user's
own file for the others. The prepared dataset points that split's images there; untagged datasets
are read from the user's folders as before.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from segtune.cocodata.images import ImageInfo

STORED, UPRIGHT = "stored", "upright"
FOLDER = "coco_images"  # in a dataset entry: per split, the images as annotated
VIEWS_DIR = "oriented"  # in the cache: the written views, by content digest


def annotated_view(info: ImageInfo, width: int, height: int) -> str | None:
    """STORED or UPRIGHT for an image whose tag changes its pixels and whose JSON size fits that
    view; None for an image without such a tag, or whose size fits neither view (an error)."""
    if not info.transformed or info.size is None:
        return None
    if (width, height) == info.display_size:
        return UPRIGHT  # also when both views have this size: the view photo viewers show
    if (width, height) == info.size:
        return STORED
    return None


def describe(name: str, info: ImageInfo, view: str) -> tuple[str, str]:
    """(finding kind, text) saying which view of a tagged image is used, for the data warnings."""
    stored = "x".join(map(str, info.size or (0, 0)))
    if info.size == info.display_size:
        return "exif-either", (
            f"image {name} carries EXIF orientation {info.orientation} and its size ({stored}) "
            "fits both the stored and the upright view: the upright view is used"
        )
    if view == UPRIGHT:
        return "exif-upright", (
            f"image {name} carries EXIF orientation {info.orientation} and its JSON size is "
            "the upright view's: the upright view is used"
        )
    return "exif-stored", (
        f"image {name} carries EXIF orientation {info.orientation} but its JSON size is the "
        f"stored pixels' ({stored}): those pixels are used, as they were annotated"
    )


def write_view(info: ImageInfo, view: str, directory: Path) -> Path:
    """The image's pixels in `view` as a PNG without EXIF, written once (by content digest)."""
    from PIL import Image, ImageOps

    target = directory / f"{info.digest.hex()}-{view}.png"
    if target.is_file():
        return target
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".{target.name}.{os.getpid()}.tmp"
    with Image.open(info.path) as image:
        pixels = ImageOps.exif_transpose(image) if view == UPRIGHT else image
        if pixels.mode not in ("1", "L", "LA", "I", "I;16", "P", "RGB", "RGBA"):
            pixels = pixels.convert("RGB")  # CMYK, YCbCr...: what the loaders turn them into
        pixels.save(tmp, format="PNG")  # no exif= argument: the tag is not carried over
    os.replace(tmp, target)  # atomic: a concurrent run writes the same bytes
    return target


def tagged_views(coco: Mapping[str, Any], infos: Mapping[int, ImageInfo]) -> dict[int, tuple[ImageInfo, str]]:
    """image id -> (its file, the view its annotations describe), for the images of a split whose
    tag changes their pixels."""
    views = {}
    for image in coco["images"]:
        info = infos.get(image["id"])
        view = annotated_view(info, image["width"], image["height"]) if info is not None else None
        if view is not None:
            views[image["id"]] = (info, view)
    return views


def take_sources(coco: dict[str, Any], images_dir: Path) -> dict[int, Path]:
    """image id -> the user's file, for a split that gets an image folder. File names that would
    lead out of that folder (absolute, '..') are made relative in `coco` (the normalised copy)."""
    sources = {}
    for image in coco["images"]:
        sources[image["id"]] = (images_dir / image["file_name"]).resolve()
        parts = [p for p in PurePosixPath(image["file_name"].replace("\\", "/")).parts if p not in ("", ".", "..", "/")]
        safe = "/".join(parts) or f"image_{image['id']}"
        if safe != image["file_name"]:
            image["file_name"] = safe
    return sources


def image_folder(
    build_dir: Path,
    split: str,
    coco: Mapping[str, Any],
    sources: Mapping[int, Path],
    views: Mapping[int, tuple[ImageInfo, str]],
    cache_dir: Path,
) -> Path:
    """Write `<build_dir>/coco_images/<split>/` (see the module docstring): links under the file
    names of `coco` to the written view of each tagged image and to the user's file of the others."""
    folder = build_dir / FOLDER / split
    for image in coco["images"]:
        link = folder / image["file_name"]
        link.parent.mkdir(parents=True, exist_ok=True)
        if image["id"] in views:
            source = write_view(*views[image["id"]], cache_dir / VIEWS_DIR)
        else:
            source = sources[image["id"]]
        try:
            os.symlink(source, link)
        except FileExistsError:
            pass  # two entries of one file
        except OSError:  # no symlinks here (some Windows setups, some network filesystems)
            shutil.copy2(source, link)
    return folder
