"""A seeded train/val split for datasets that come with a train split only."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np


def split_image_ids(data: Mapping[str, Any], val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Image ids for (train, val): `val_fraction` of all images (at least one) go to val.

    Val images are drawn from the annotated images only, so val always has something to evaluate;
    background images stay in train. The draw depends only on the set of ids and the seed, not on
    the order of the JSON. Raises ValueError when there is nothing to split.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    all_ids = sorted({int(image["id"]) for image in data["images"]})
    annotated = sorted({int(ann["image_id"]) for ann in data["annotations"]} & set(all_ids))
    if len(annotated) < 2:
        raise ValueError(f"cannot split {len(annotated)} annotated image(s) into train and val: need at least 2")
    n_val = min(max(1, round(len(all_ids) * val_fraction)), len(annotated) - 1)
    order = np.random.default_rng(seed).permutation(len(annotated))
    val = sorted(annotated[i] for i in order[:n_val])
    val_set = set(val)
    train = [image_id for image_id in all_ids if image_id not in val_set]
    return train, val
