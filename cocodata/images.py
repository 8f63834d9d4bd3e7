"""Image files read once: content digest, stored size and EXIF orientation (or why it is unusable)."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROTATING_ORIENTATIONS = {5, 6, 7, 8}  # EXIF orientations that swap width and height
TRANSFORMING_ORIENTATIONS = {2, 3, 4, 5, 6, 7, 8}  # every orientation but 1 ("as stored") moves pixels


@dataclass(frozen=True)
class ImageInfo:
    """What was read from one image file: content digest, stored size, EXIF orientation, or the error."""

    path: Path
    digest: bytes = b""
    size: tuple[int, int] | None = None  # (width, height) as stored, before EXIF rotation
    orientation: int = 1
    error: str | None = None

    @property
    def rotated(self) -> bool:
        return self.orientation in ROTATING_ORIENTATIONS

    @property
    def transformed(self) -> bool:
        """Loaders that apply the tag see other pixels than those stored."""
        return self.orientation in TRANSFORMING_ORIENTATIONS

    @property
    def display_size(self) -> tuple[int, int] | None:
        """(width, height) as EXIF-honouring loaders (OpenCV, Ultralytics) see the image."""
        if self.size is None:
            return None
        return (self.size[1], self.size[0]) if self.rotated else self.size


def _read_image(path: Path) -> ImageInfo:
    from PIL import Image

    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return ImageInfo(path, error="missing")
    except OSError as exc:
        return ImageInfo(path, error=f"unreadable ({exc.strerror or exc})")
    digest = hashlib.blake2b(data, digest_size=16).digest()
    try:
        # Header and verify() only: a full decode of every image would dominate preparation time.
        with Image.open(io.BytesIO(data)) as image:
            image.verify()  # must come straight after open; the image is unusable afterwards
        with Image.open(io.BytesIO(data)) as image:
            size = image.size
            orientation = int(image.getexif().get(0x0112, 1) or 1)
    except Exception as exc:  # PIL raises many types for broken files
        return ImageInfo(path, digest, error=f"unreadable ({type(exc).__name__}: {exc})")
    return ImageInfo(path, digest, size, orientation)


def scan_images(paths: Sequence[Path], workers: int = 8) -> list[ImageInfo]:
    """Read every image once, in threads: file I/O and hashing release the GIL."""
    if not paths:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(paths)))) as pool:
        return list(pool.map(_read_image, paths))


def exif_warning(name: str, orientation: int) -> str:
    """For datasets in Ultralytics' own format, whose labels are relative to the upright view."""
    return (
        f"image {name} carries EXIF orientation {orientation}: its labels are read against the upright "
        "view, as Ultralytics reads them; check them in a viewer that applies the tag"
    )
