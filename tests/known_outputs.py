"""Test data whose right answer is known, and a "model" that gives it.

`write_quirky_coco` writes a small COCO set with the quirks of a real Roboflow export (the shared
microcontroller_seg): image and annotation ids from 0, an empty placeholder category 0 besides the
real ones 1..3, and boxes that reach past the image border. Every object is an L-shape of one
grey level per category on a grey (114) background, painted from its own ground-truth mask.

`instances_from_grey` reads those objects back from the pixels a network gets (after the
framework's resize, letterbox or padding): connected regions that differ from the background,
their category from their grey level. Each framework's test wraps it in that framework's raw
output format, so the framework's own post-processing and the adapter's conversion run as in a
trial. `mutate` makes the deliberate mistakes those tests must catch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BACKGROUND = 114  # also Ultralytics' letterbox padding, and close to the normalised pads (pixel means)
LEVELS = {1: 255, 2: 190, 3: 20}  # category id -> grey level
PLACEHOLDER = {"id": 0, "name": "boards", "supercategory": "none"}
CATEGORIES = [PLACEHOLDER] + [
    {"id": c, "name": n, "supercategory": "boards"} for c, n in ((1, "Arduino"), (2, "ESP8266"), (3, "Heltec"))
]
WIDTH, HEIGHT = 80, 44  # not square, and 4x the height is no multiple of 32: letterboxing pads
BOX_OVERHANG = 6  # px a touching object's exported box reaches past the image border
MUTATIONS = ("flip", "scale", "permute")


def _l_shape(x: int, y: int, w: int, h: int, notch: int) -> list[float]:
    """An L: the rectangle (x, y, w, h) without the quarter at corner `notch` (0..3), as a polygon."""
    hw, hh = w // 2, h // 2
    xs, ys = (x, x + hw, x + w), (y, y + hh, y + h)
    corners = {  # clockwise, leaving out one quadrant
        0: [(xs[1], ys[0]), (xs[2], ys[0]), (xs[2], ys[2]), (xs[0], ys[2]), (xs[0], ys[1]), (xs[1], ys[1])],
        1: [(xs[0], ys[0]), (xs[1], ys[0]), (xs[1], ys[1]), (xs[2], ys[1]), (xs[2], ys[2]), (xs[0], ys[2])],
        2: [(xs[0], ys[0]), (xs[2], ys[0]), (xs[2], ys[1]), (xs[1], ys[1]), (xs[1], ys[2]), (xs[0], ys[2])],
        3: [(xs[0], ys[0]), (xs[2], ys[0]), (xs[2], ys[2]), (xs[1], ys[2]), (xs[1], ys[1]), (xs[0], ys[1])],
    }[notch]
    return [float(v) for point in corners for v in point]


def _split(root: Path, split: str, count: int, rng: np.random.Generator, first_ann_id: int) -> int:
    from PIL import Image

    from segtune.cocodata import masks

    images, annotations = [], []
    ann_id = first_ann_id
    (root / "images" / split).mkdir(parents=True)
    for image_id in range(count):
        canvas = np.full((HEIGHT, WIDTH), BACKGROUND, dtype=np.uint8)
        for slot, category in enumerate(rng.permutation([1, 2, 3])):
            w, h = (int(v) for v in rng.integers(14, 21, size=2))
            touches = slot == 2 and image_id % 2 == 0  # half the images: an object at the right border
            x = WIDTH - w if touches else slot * 26 + int(rng.integers(1, 26 - w))  # 2 px apart at least
            y = int(rng.integers(1, HEIGHT - h))
            polygon = _l_shape(x, y, w, h, int(rng.integers(0, 4)))
            mask = masks.to_mask([polygon], HEIGHT, WIDTH)
            canvas[mask > 0] = LEVELS[int(category)]
            box = masks.box_of(masks.to_rle([polygon], HEIGHT, WIDTH))
            if touches:
                box[2] += BOX_OVERHANG  # exported past the border, as Roboflow boxes sometimes are
            annotations.append(
                {
                    "id": ann_id,
                    "image_id": image_id,
                    "category_id": int(category),
                    "segmentation": [polygon],
                    "bbox": box,
                    "area": float(mask.sum()),
                    "iscrowd": 0,
                }
            )
            ann_id += 1
        name = f"{split}_{image_id:02d}.png"
        Image.fromarray(np.stack([canvas] * 3, axis=-1)).save(root / "images" / split / name)
        images.append({"id": image_id, "file_name": name, "width": WIDTH, "height": HEIGHT})
    coco = {
        "info": {"description": "quirks of a Roboflow export"},
        "images": images,
        "annotations": annotations,
        "categories": CATEGORIES,
    }
    (root / "annotations").mkdir(exist_ok=True)
    (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(coco))
    return ann_id


def write_quirky_coco(root: Path, n_train: int = 4, n_val: int = 4, seed: int = 0) -> Path:
    """The quirk case (see the module docstring) as a COCO folder at `root`."""
    rng = np.random.default_rng(seed)
    _split(root, "train", n_train, rng, first_ann_id=0)
    _split(root, "val", n_val, rng, first_ann_id=0)
    return root


def write_dense_coco(root: Path, grid: int = 18) -> Path:
    """A dense scene: one val image of grid x grid squares of category 1 (6 px, 2 px apart); the
    train split has one object of each of categories 1 and 2, so both get a class index."""
    from PIL import Image

    from segtune.cocodata import masks

    def split(name: str, size: int, objects: list[tuple[int, int, int, int]]) -> None:
        canvas = np.full((size, size), BACKGROUND, dtype=np.uint8)
        annotations = []
        for ann_id, (category, x, y, side) in enumerate(objects, start=1):
            polygon = [float(v) for v in (x, y, x + side, y, x + side, y + side, x, y + side)]
            canvas[masks.to_mask([polygon], size, size) > 0] = LEVELS[category]
            annotations.append(
                {
                    "id": ann_id,
                    "image_id": 1,
                    "category_id": category,
                    "segmentation": [polygon],
                    "bbox": [float(x), float(y), float(side), float(side)],
                    "area": float(side * side),
                    "iscrowd": 0,
                }
            )
        (root / "images" / name).mkdir(parents=True)
        Image.fromarray(np.stack([canvas] * 3, axis=-1)).save(root / "images" / name / "scene.png")
        coco = {
            "images": [{"id": 1, "file_name": "scene.png", "width": size, "height": size}],
            "annotations": annotations,
            "categories": CATEGORIES[1:3],
        }
        (root / "annotations").mkdir(exist_ok=True)
        (root / "annotations" / f"instances_{name}.json").write_text(json.dumps(coco))

    split("train", 64, [(1, 4, 4, 20), (2, 36, 36, 20)])
    split("val", 8 * grid, [(1, 1 + 8 * i, 1 + 8 * j, 6) for j in range(grid) for i in range(grid)])
    return root


@dataclass(frozen=True)
class Found:
    class_index: int
    mask: np.ndarray  # bool (H, W) at the resolution of the grey image it was read from
    box: tuple[int, int, int, int]  # x1, y1, x2, y2 (x2, y2 exclusive) in that resolution


def instances_from_grey(grey: np.ndarray, class_of_level: dict[int, int], mutate: str | None = None) -> list[Found]:
    """The objects in a (H, W) grey image (0-255 floats): connected regions at least 20 grey levels
    away from the background; each takes the class of the level it reaches, its mask is where it
    is at least half-way there (the edge a nearest-neighbour resize would give).

    mutate: "flip" mirrors every object left-right, "scale" reports it at 3/4 of its size and
    position, "permute" gives it the next class.
    """
    import cv2

    height, width = grey.shape
    away = np.abs(grey.astype(np.float32) - BACKGROUND)
    count, labels = cv2.connectedComponents((away > 20).astype(np.uint8), connectivity=4)
    levels = np.array(sorted(class_of_level), dtype=np.float32)
    found = []
    for label in range(1, count):
        region = labels == label
        extreme = grey[region][np.argmax(away[region])]
        level = float(levels[np.argmin(np.abs(levels - extreme))])
        mask = region & (away >= abs(level - BACKGROUND) / 2)
        if not mask.any():
            continue
        class_index = class_of_level[int(level)]
        if mutate == "flip":
            mask = mask[:, ::-1]
        elif mutate == "scale":
            small = cv2.resize(
                mask.astype(np.uint8), (width * 3 // 4, height * 3 // 4), interpolation=cv2.INTER_NEAREST
            )
            mask = np.zeros_like(mask)
            mask[: small.shape[0], : small.shape[1]] = small > 0
        elif mutate == "permute":
            class_index = (class_index + 1) % len(class_of_level)
        if not mask.any():
            continue
        ys, xs = np.nonzero(mask)
        found.append(
            Found(
                class_index,
                np.ascontiguousarray(mask),
                (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1),
            )
        )
    return found


def class_of_level(category_ids: tuple[int, ...]) -> dict[int, int]:
    """grey level -> class index, for a prepared dataset's class order."""
    return {LEVELS[c]: index for index, c in enumerate(category_ids)}


# ---- the answers in each framework's raw output format ------------------------------------------------
MASK_SIDE = 56  # RoI mask resolution of the Mask R-CNN answers (28 in the real heads)


def yolo_answer(levels: dict[int, int], mutate: str | None = None, decoy_class: int | None = None):
    """A replacement for Ultralytics' `BaseModel._predict_once`: its eval output ((y, protos), raw),
    y (B, 4 + nc + nm, anchors) = xywh in input pixels, class scores, mask coefficients; protos at
    1/4 of the input, one per class, each instance's mask its class's prototype cropped to its box.

    decoy_class: every object is also answered as that class, scored above the right answer (0.9
    against 0.5), with the same mask: a detection limit without headroom keeps only the decoys.
    """
    import torch

    def predict_once(model, x, *args, **kwargs):
        head = model.model[-1]
        nc, nm = head.nc, head.nm
        batch, _, height, width = x.shape
        found = [instances_from_grey(image.float().mean(0).cpu().numpy() * 255, levels, mutate) for image in x]
        per_object = 1 if decoy_class is None else 2
        y = torch.zeros(batch, 4 + nc + nm, max(1, per_object * max(map(len, found))))
        protos = torch.full((batch, nm, height // 4, width // 4), -1.0)
        for b, instances in enumerate(found):
            for k, inst in enumerate(instances):
                x1, y1, x2, y2 = inst.box
                answers = [(inst.class_index, 0.9 if decoy_class is None else 0.5)]
                if decoy_class is not None:
                    answers.append((decoy_class, 0.9))
                for j, (class_index, score) in enumerate(answers):
                    column = per_object * k + j
                    y[b, :4, column] = torch.tensor([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1])
                    y[b, 4 + class_index, column] = score
                    y[b, 4 + nc + inst.class_index, column] = 1.0
                quarter = torch.nn.functional.avg_pool2d(torch.from_numpy(inst.mask).float()[None, None], 4)
                protos[b, inst.class_index][quarter[0, 0] > 0.5] = 1.0
        return (y, protos), {}

    return predict_once


def _grey(normalised, mean, std, scale: float) -> np.ndarray:
    """(3, H, W) normalised image tensor -> (H, W) grey levels 0-255."""
    import torch

    pixels = normalised.cpu() * torch.as_tensor(std).view(3, 1, 1) + torch.as_tensor(mean).view(3, 1, 1)
    return (pixels.mean(0) * scale).numpy()


def torchvision_answer(model, levels: dict[int, int], mutate: str | None = None) -> None:
    """Make a torchvision MaskRCNN answer from its transformed batch: its RPN keeps the batch, its
    RoI heads answer (eval output: boxes, labels 1.., scores, masks (N, 1, M, M) in the box, made
    by the projection its training targets use)."""
    import torch
    from torchvision.models.detection.roi_heads import project_masks_on_boxes

    seen = {}

    def rpn(images, features, targets=None):
        seen["images"] = images
        return [torch.zeros(0, 4)] * len(images.image_sizes), {}

    def roi_heads(features, proposals, image_shapes, targets=None):
        results = []
        for tensor, (height, width) in zip(seen["images"].tensors, image_shapes):
            grey = _grey(tensor[:, :height, :width], model.transform.image_mean, model.transform.image_std, 255)
            found = instances_from_grey(grey, levels, mutate)
            boxes = torch.tensor([f.box for f in found], dtype=torch.float32).reshape(-1, 4)
            masks = torch.from_numpy(np.stack([f.mask for f in found]) if found else np.zeros((0, height, width)))
            roi_masks = project_masks_on_boxes(masks.float(), boxes, torch.arange(len(found)), MASK_SIDE)
            results.append(
                {
                    "boxes": boxes,
                    "labels": torch.tensor([f.class_index + 1 for f in found]),
                    "scores": torch.full((len(found),), 0.9),
                    "masks": roi_masks[:, None],
                }
            )
        return results, {}

    model.rpn.forward = rpn
    model.roi_heads.forward = roi_heads


def detectron2_answer(model, levels: dict[int, int], mutate: str | None = None) -> None:
    """Make a Detectron2 GeneralizedRCNN's RoI heads answer from the batch they get (Instances:
    pred_boxes, scores, pred_classes, pred_masks (N, 1, M, M) in the box, cropped as its training
    targets are)."""
    import torch
    from detectron2.structures import BitMasks, Boxes, Instances

    def roi_heads(images, features, proposals, targets=None):
        results = []
        for tensor, (height, width) in zip(images.tensor, images.image_sizes):
            grey = _grey(tensor[:, :height, :width], model.pixel_mean.view(-1).cpu(), model.pixel_std.view(-1).cpu(), 1)
            found = instances_from_grey(grey, levels, mutate)
            boxes = torch.tensor([f.box for f in found], dtype=torch.float32).reshape(-1, 4)
            masks = torch.from_numpy(np.stack([f.mask for f in found]) if found else np.zeros((0, height, width), bool))
            instances = Instances((height, width))
            instances.pred_boxes = Boxes(boxes)
            instances.scores = torch.full((len(found),), 0.9)
            instances.pred_classes = torch.tensor([f.class_index for f in found], dtype=torch.int64)
            instances.pred_masks = BitMasks(masks).crop_and_resize(boxes, MASK_SIDE).float()[:, None]
            results.append(instances)
        return results, {}

    model.roi_heads.forward = roi_heads
