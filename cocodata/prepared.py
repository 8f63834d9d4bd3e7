"""The prepared dataset: what the runner hands every trial, once validation and conversion are done."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class PreparedDataset:
    """Absolute paths of a validated dataset, in COCO form and (when converted) Ultralytics form.

    `category_ids[i]` is the original COCO category id of class index i: frameworks train on
    contiguous class indices, predictions are mapped back before evaluation.
    """

    name: str
    content_hash: str
    train_json: Path
    train_images: Path
    val_json: Path
    val_images: Path
    category_ids: tuple[int, ...]
    category_names: tuple[str, ...]
    yolo_yaml: Path | None = None
    num_train_images: int = 0
    num_val_images: int = 0
    warnings: tuple[str, ...] = field(default_factory=tuple)
    # Most annotated objects in one image (train or val): the evaluator's maxDets and the model's
    # detection limit must be at least this, or dense images are scored against truncated output.
    max_objects_per_image: int = 0

    @property
    def num_classes(self) -> int:
        return len(self.category_ids)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key, value in data.items():
            if isinstance(value, Path):
                data[key] = str(value)
            elif isinstance(value, tuple):
                data[key] = list(value)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "PreparedDataset":
        values = dict(data)
        for key in ("train_json", "train_images", "val_json", "val_images", "yolo_yaml"):
            if values.get(key) is not None:
                values[key] = Path(values[key])
        for key in ("category_ids", "category_names", "warnings"):
            values[key] = tuple(values.get(key) or ())
        return cls(**values)

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, path: Path) -> "PreparedDataset":
        return cls.from_dict(json.loads(Path(path).read_text()))
