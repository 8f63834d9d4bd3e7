"""COCO instance data for torchvision detection models: decoding, an in-memory cache, a seeded stream.

The stream of training batches is a pure function of (SEED, global iteration): sample k of the
stream is `perm_p[k % n]` with p = k // n and `perm_p` a permutation seeded by (seed, p); its
horizontal flip is drawn from the same generator. So data order does not depend on worker count,
and a run resumed at iteration i sees exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from pycocotools import mask as mask_utils
from torch.utils.data import DataLoader, Dataset, Sampler

from segtune.cocodata import masks
from segtune.cocodata.results import ImageRecord, list_images

CACHE_LIMIT_BYTES = 2 * 1024**3  # decode once and keep in memory when the decoded split is smaller


def decode_image(record: ImageRecord) -> torch.Tensor:
    """(3, H, W) uint8 RGB at the size the COCO file declares: EXIF orientation applied when that
    gives the declared size (as Detectron2 and Ultralytics read images), else the stored pixels."""
    from PIL import Image, ImageOps

    want = (record.width, record.height)
    with Image.open(record.path) as im:
        image = ImageOps.exif_transpose(im)
        if image.size != want:
            image = im
        if image.size != want:
            raise ValueError(
                f"image {record.path} is {image.size[0]}x{image.size[1]} but the COCO file says "
                f"{record.width}x{record.height}; fix width/height in the annotations"
            )
        array = np.asarray(image.convert("RGB"))
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()


@dataclass
class Instances:
    boxes: torch.Tensor  # (N, 4) float32 xyxy
    labels: torch.Tensor  # (N,) int64, 1-based (0 is background)
    masks: torch.Tensor  # (N, H, W) uint8


def load_instances(annotations: Sequence[dict], record: ImageRecord, label_of: dict[int, int]) -> Instances:
    """Training targets of one image: crowd, unknown-category, empty and degenerate ones skipped.

    Masks and boxes are read by `cocodata.masks`, as the evaluator reads them; a box is the
    annotation's own (clipped to the image) or, without one, the mask's.
    """
    boxes, labels, instance_masks = [], [], []
    for ann in annotations:
        if ann.get("iscrowd", 0) or ann.get("category_id") not in label_of or "segmentation" not in ann:
            continue
        rle = masks.to_rle(ann["segmentation"], record.height, record.width)
        if masks.area(rle) == 0:
            continue
        box = ann["bbox"] if ann.get("bbox") is not None else masks.box_of(rle)
        x1, y1, x2, y2 = masks.xywh_to_xyxy(masks.clip_box(box, record.width, record.height))
        if x2 - x1 < 1 or y2 - y1 < 1:
            continue
        boxes.append([x1, y1, x2, y2])
        labels.append(label_of[ann["category_id"]])
        instance_masks.append(mask_utils.decode(rle))
    if not boxes:
        return Instances(
            torch.zeros((0, 4)),
            torch.zeros((0,), dtype=torch.int64),
            torch.zeros((0, record.height, record.width), dtype=torch.uint8),
        )
    return Instances(
        torch.tensor(boxes, dtype=torch.float32),
        torch.tensor(labels, dtype=torch.int64),
        torch.from_numpy(np.stack(instance_masks)),
    )


class CocoInstances(Dataset):
    """Items are (image uint8 (3,H,W), target dict) for keys (index, flip) from `StreamBatches`.

    When the decoded split fits in CACHE_LIMIT_BYTES, images and targets are decoded once:
    `preload()` fills the cache up front (before worker processes fork, which then share it);
    without it the cache fills lazily in the process that reads (workers=0).
    """

    def __init__(
        self,
        gt_json: Path,
        images_dir: Path,
        category_ids: Sequence[int],
        *,
        with_targets: bool = True,
        cache_limit: int = CACHE_LIMIT_BYTES,
    ) -> None:
        import json

        self.records = list_images(gt_json, images_dir)
        self.with_targets = with_targets
        self.label_of = {int(cid): i + 1 for i, cid in enumerate(category_ids)}
        self.annotations: dict[int, list[dict]] = {r.image_id: [] for r in self.records}
        if with_targets:
            for ann in json.loads(Path(gt_json).read_text()).get("annotations", []):
                self.annotations.setdefault(int(ann["image_id"]), []).append(ann)
        per_pixel = 3 + (sum(map(len, self.annotations.values())) / max(1, len(self.records)) if with_targets else 0)
        self.decoded_bytes = int(sum(r.width * r.height for r in self.records) * per_pixel)
        self.cache: dict[int, tuple[torch.Tensor, Instances | None]] | None = (
            {} if self.decoded_bytes < cache_limit else None
        )

    def __len__(self) -> int:
        return len(self.records)

    def _decode(self, index: int) -> tuple[torch.Tensor, Instances | None]:
        record = self.records[index]
        image = decode_image(record)
        if not self.with_targets:
            return image, None
        return image, load_instances(self.annotations[record.image_id], record, self.label_of)

    def load(self, index: int) -> tuple[torch.Tensor, Instances | None]:
        if self.cache is None:
            return self._decode(index)
        if index not in self.cache:
            self.cache[index] = self._decode(index)
        return self.cache[index]

    def preload(self, threads: int = 2) -> None:
        if self.cache is None:
            return
        missing = [i for i in range(len(self)) if i not in self.cache]
        with ThreadPoolExecutor(max(1, threads)) as pool:  # decoding releases the GIL
            for index, item in zip(missing, pool.map(self._decode, missing)):
                self.cache[index] = item

    def __getitem__(self, key: tuple[int, bool]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        index, flip = key
        image, inst = self.load(index)
        assert inst is not None, "a dataset made with with_targets=False has no targets"
        boxes, masks = inst.boxes, inst.masks
        if flip:
            width = image.shape[-1]
            image, masks = image.flip(-1), masks.flip(-1)
            boxes = torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], dim=1)
        return image, {"boxes": boxes, "labels": inst.labels, "masks": masks}


class StreamBatches(Sampler[list[tuple[int, bool]]]):
    """Batches of (index, flip) for global iterations [start, stop) of the seeded stream."""

    def __init__(self, n_images: int, batch_size: int, seed: int, start: int, stop: int, flip: bool = True) -> None:
        self.n, self.batch_size, self.seed = n_images, batch_size, seed
        self.start, self.stop, self.flip = start, stop, flip
        self._pass: tuple[int, list[int], list[bool]] | None = None

    def _sample(self, k: int) -> tuple[int, bool]:
        p = k // self.n
        if self._pass is None or self._pass[0] != p:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + p)
            perm = torch.randperm(self.n, generator=g).tolist()
            flips = (torch.rand(self.n, generator=g) < 0.5).tolist() if self.flip else [False] * self.n
            self._pass = (p, perm, flips)
        _, perm, flips = self._pass
        return perm[k % self.n], bool(flips[k % self.n])

    def __iter__(self) -> Iterator[list[tuple[int, bool]]]:
        for it in range(self.start, self.stop):
            yield [self._sample(it * self.batch_size + j) for j in range(self.batch_size)]

    def __len__(self) -> int:
        return max(0, self.stop - self.start)


def collate(batch: list[tuple[torch.Tensor, dict]]) -> tuple[list[torch.Tensor], list[dict]]:
    return [item[0] for item in batch], [item[1] for item in batch]


def train_loader(
    dataset: CocoInstances, *, batch_size: int, seed: int, start_iter: int, stop_iter: int, workers: int
) -> DataLoader:
    """One loader for the whole run: workers start once and read the cache preloaded before they fork."""
    if workers > 0:
        dataset.preload(threads=workers)
    sampler = StreamBatches(len(dataset), batch_size, seed, start_iter, stop_iter)
    # Its own generator: creating the loader must not draw from the global RNG (resume = no resume).
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=workers,
        collate_fn=collate,
        generator=torch.Generator().manual_seed(seed),
    )
