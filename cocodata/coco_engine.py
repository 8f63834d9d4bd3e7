"""The C++ COCO evaluation engine behind CocoEvaluator: faster-coco-eval's COCOeval_faster.

Why not pycocotools: evaluation runs after every epoch of every trial while the trial's GPU
waits, and pycocotools matches detections to ground truth in pure Python: ~140 s for one dense
validation set (issue 10). faster-coco-eval runs the same matching and accumulation in C++
(detectron2's COCOeval_opt lineage) with the same rules: greedy matching in score order (stable
sort), crowd GT matchable many times, area ranges inclusive at both ends, at most maxDets
detections per image and category. The tests hold every figure to pycocotools', the reference.

Two things make it faster still on dense images, without changing a single figure:

1. The C++ matcher compares every detection of an image and category with every GT of it, for
   10 IoU thresholds x 4 area ranges: quadratic, and the largest cost left on dense scenes. But a
   detection can only ever be matched to a GT with IoU >= 0.5 (the lowest threshold). So each
   image/category is cut into independent parts: the connected components of the "IoU >= 0.5"
   graph between its detections and GT, packed into pseudo-images of about BIN_ITEMS instances.
   Matching inside a part is the same as in the whole image (the other instances could never
   be candidates), the GT and detection counts per category are unchanged, and pseudo-images
   keep the order of their images, so accumulation sees the detections in the same order.
   Only ties need care: accumulation breaks equal scores by position, which the cut could
   reorder, so an image/category with two equal scores stays whole.
2. The IoUs are computed here once per image/category (needed for the cut anyway) and handed to
   the engine, so it decodes no mask; loadRes is replaced by building result dicts in bulk.

Ids given to GT and detections start at 1: like pycocotools, the engine records a match as the
matched annotation's id and treats id 0 as "unmatched".
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from faster_coco_eval import COCO, COCOeval_faster
from faster_coco_eval.core import mask as fast_mask

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)  # COCOeval's; the cut below relies on the lowest
AREA_LABELS = ("all", "small", "medium", "large")  # the order of COCOeval's area ranges
BIN_ITEMS = 64  # instances per pseudo-image: 16-128 measured within 5% on the dense bench
_MATCHABLE = IOU_THRESHOLDS[0] - 1e-6  # below this a pair can never be matched (with margin)


def _silent(*_args: object, **_kwargs: object) -> None:
    # faster-coco-eval reports every step through its print_function.
    return None


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Python's cyclic garbage collector paused for a block that allocates many containers.

    An evaluation builds several dicts per instance; every so many allocations start a
    collection that walks every live container of the process (a trial holds the whole GT, its
    polygons and the predictions): 10-15% of evaluate() on the dense bench, up to half on a
    first call, measured. Nothing made here forms a reference cycle, so reference counting
    frees it all; collection resumes after.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def mask_areas(rles: list[dict]) -> np.ndarray:
    """Pixel areas of compressed RLE masks, in one C++ call."""
    if not rles:
        return np.zeros(0)
    return fast_mask.area(list(rles)).astype(np.float64)


def mask_boxes(rles: list[dict]) -> np.ndarray:
    """[x, y, w, h] boxes around compressed RLE masks, in one C++ call; shape (N, 4)."""
    if not rles:
        return np.zeros((0, 4))
    return np.asarray(fast_mask.toBbox(list(rles)), dtype=np.float64).reshape(-1, 4)


class GroundTruth:
    """A normalised GT (ids from 1, iscrowd, area, bbox and RLE present) as arrays, built once."""

    def __init__(self, dataset: dict) -> None:
        self.image_ids = np.array(sorted(img["id"] for img in dataset["images"]))
        self.categories = sorted(dataset["categories"], key=lambda cat: cat["id"])
        self.category_ids = np.array([cat["id"] for cat in self.categories])
        anns = dataset["annotations"]
        self.image_rank = np.searchsorted(self.image_ids, [a["image_id"] for a in anns])
        self.category = np.array([a["category_id"] for a in anns], dtype=np.int64)
        self.crowd = np.array([bool(a["iscrowd"]) for a in anns])
        self.area = np.array([float(a["area"]) for a in anns])
        self.masks = [a["segmentation"] for a in anns]
        self.boxes = np.array([a["bbox"] for a in anns], dtype=np.float64).reshape(-1, 4)

    def __len__(self) -> int:
        return len(self.area)

    def group(self) -> np.ndarray:
        """Each annotation's image/category group: image rank x categories + category rank."""
        return self.image_rank * len(self.category_ids) + np.searchsorted(self.category_ids, self.category)


@dataclass(frozen=True)
class Detections:
    """Checked predictions as columns; image and category ids are the GT's."""

    image_ids: np.ndarray
    category_ids: np.ndarray
    scores: np.ndarray
    masks: list[dict]  # compressed RLE at the image's resolution
    boxes: np.ndarray  # (N, 4) [x, y, w, h]


@dataclass(frozen=True)
class _Task:
    """One task's instances: geometry for IoU and area for the size ranges."""

    name: str
    dt_geometry: list | np.ndarray
    dt_area: np.ndarray
    gt_geometry: list | np.ndarray


def precision(gt: GroundTruth, dets: Detections, task: str, max_dets: int) -> np.ndarray:
    """COCOeval's interpolated precision [T, R, K, A] at maxDets = max_dets for `task`.

    T = IOU_THRESHOLDS, R = 101 recall thresholds, K = GT categories (sorted ids),
    A = AREA_LABELS; -1 where a category has no GT in that area range. Detection areas are mask
    areas for "segm" and box areas for "bbox" (as loadRes sets them); GT areas are the GT's.
    """
    if task == "segm":
        spec = _Task(task, dets.masks, mask_areas(dets.masks), gt.masks)
    elif task == "bbox":
        spec = _Task(task, dets.boxes, dets.boxes[:, 2] * dets.boxes[:, 3], gt.boxes)
    else:
        raise ValueError(f"unknown task {task!r}: 'segm' or 'bbox'")
    return _Evaluation(gt, dets, spec, max_dets).run()


def _group_starts(groups: np.ndarray) -> np.ndarray:
    """For a sorted group array: the index where each element's group begins."""
    n = len(groups)
    first = np.r_[True, groups[1:] != groups[:-1]] if n else np.zeros(0, bool)
    return np.maximum.accumulate(np.where(first, np.arange(n), 0)) if n else np.zeros(0, int)


def _components(n_nodes: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Connected-component label of each node (its smallest member) for edges a[i] - b[i]."""
    label = np.arange(n_nodes)
    while True:
        low = np.minimum(label[a], label[b])
        nxt = label.copy()
        np.minimum.at(nxt, a, low)
        np.minimum.at(nxt, b, low)
        nxt = nxt[nxt]  # follow labels to their own labels: long chains converge fast
        if np.array_equal(nxt, label):
            return label
        label = nxt


class _Evaluation:
    """One task's evaluation: cut into pseudo-images, then COCOeval_faster on them."""

    def __init__(self, gt: GroundTruth, dets: Detections, task: _Task, max_dets: int) -> None:
        self.gt, self.task, self.max_dets = gt, task, max_dets
        n_cats = len(gt.category_ids)
        dt_group = np.searchsorted(gt.image_ids, dets.image_ids) * n_cats + np.searchsorted(
            gt.category_ids, dets.category_ids
        )
        # The detections COCOeval would keep: per image/category the max_dets best, in its order
        # (score descending, ties in prediction order). The rest can never count.
        order = np.lexsort((np.arange(len(dt_group)), -dets.scores, dt_group))
        rank = np.arange(len(order)) - _group_starts(dt_group[order])
        self.kept = order[rank < max_dets]
        self.dt_group = dt_group[self.kept]
        self.dt_start = _group_starts(self.dt_group)
        self.scores = dets.scores[self.kept]
        gt_group = gt.group()
        self.gt_order = np.argsort(gt_group, kind="stable")
        self.gt_group = gt_group[self.gt_order]
        self.gt_start = _group_starts(self.gt_group)
        self.gt_position = np.empty(len(gt), dtype=np.int64)  # GT index -> place in gt_order
        self.gt_position[self.gt_order] = np.arange(len(gt))
        self.ious: dict[int, np.ndarray] = {}

    def run(self) -> np.ndarray:
        edges = self._compute_ious()
        pseudo_dt, pseudo_gt = self._pseudo_images(edges)
        coco_gt, coco_dt = self._indexes(pseudo_dt, pseudo_gt)
        coco_eval = _GivenIoUs(coco_gt, coco_dt, self.task.name, self)
        if tuple(coco_eval.params.areaRngLbl) != AREA_LABELS:  # a layout change shifts figures
            raise RuntimeError(f"unexpected COCOeval area ranges {coco_eval.params.areaRngLbl}")
        coco_eval.params.maxDets = [self.max_dets]
        coco_eval.evaluate()
        coco_eval.accumulate()
        return np.asarray(coco_eval.eval["precision"])[..., -1]

    def _compute_ious(self) -> tuple[np.ndarray, np.ndarray]:
        """IoU matrix of every image/category with detections and GT (rows: kept detections in
        order, columns: GT in order); returns the matchable pairs as (dt node, GT node)."""
        dt_nodes, gt_nodes = [], []
        groups, dt_first = np.unique(self.dt_group, return_index=True)
        dt_last = np.r_[dt_first[1:], len(self.dt_group)]
        gt_first = np.searchsorted(self.gt_group, groups, side="left")
        gt_last = np.searchsorted(self.gt_group, groups, side="right")
        dt_geometry, gt_geometry = self.task.dt_geometry, self.task.gt_geometry
        for group, d0, d1, g0, g1 in zip(
            groups.tolist(), dt_first.tolist(), dt_last.tolist(), gt_first.tolist(), gt_last.tolist()
        ):
            if g0 == g1:
                continue  # no GT: nothing to match, nothing to compute
            dt_idx, gt_idx = self.kept[d0:d1], self.gt_order[g0:g1]
            if isinstance(dt_geometry, np.ndarray):
                d, g = dt_geometry[dt_idx], gt_geometry[gt_idx]
            else:
                d, g = [dt_geometry[i] for i in dt_idx], [gt_geometry[i] for i in gt_idx]
            ious = np.asarray(fast_mask.iou(d, g, self.gt.crowd[gt_idx].tolist()), dtype=np.float64).reshape(
                d1 - d0, g1 - g0
            )
            self.ious[group] = ious
            rows, cols = np.nonzero(ious >= _MATCHABLE)
            dt_nodes.append(rows + d0)
            gt_nodes.append(cols + g0)
        if not dt_nodes:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        return np.concatenate(dt_nodes), np.concatenate(gt_nodes)

    def _pseudo_images(self, edges: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Pseudo-image id of each kept detection and of each GT (in gt_order)."""
        n_dt = len(self.kept)
        node_group = np.r_[self.dt_group, self.gt_group].astype(np.int64)
        label = _components(len(node_group), edges[0], edges[1] + n_dt)
        roots, inverse, sizes = np.unique(label, return_inverse=True, return_counts=True)
        # Components of a group, one after the other, fill pseudo-images of ~BIN_ITEMS.
        comp_group = node_group[roots]
        order = np.lexsort((roots, comp_group))
        before = np.cumsum(sizes[order]) - sizes[order]
        bins_sorted = (before - before[_group_starts(comp_group[order])]) // BIN_ITEMS
        comp_bin = np.empty_like(bins_sorted)
        comp_bin[order] = bins_sorted
        node_bin = comp_bin[inverse.reshape(-1)]
        # Equal scores within a group: accumulation orders them by position; keep it whole.
        tied = (np.diff(self.scores) == 0) & (np.diff(self.dt_group) == 0)
        node_bin[np.isin(node_group, self.dt_group[1:][tied])] = 0
        n_cats = len(self.gt.category_ids)
        stride = int(node_bin.max(initial=0)) + 1
        pseudo = (node_group // n_cats) * stride + node_bin  # keeps the images' order
        return pseudo[:n_dt], pseudo[n_dt:]

    def _indexes(self, pseudo_dt: np.ndarray, pseudo_gt: np.ndarray) -> tuple[COCO, COCO]:
        gt, kept = self.gt, self.kept
        used = np.unique(np.r_[pseudo_dt, pseudo_gt])
        images = [{"id": i} for i in used.tolist()]  # no sizes: the engine decodes no mask
        gt_anns = [
            {"id": n, "image_id": image, "category_id": cat, "area": area, "iscrowd": int(crowd)}
            for n, image, cat, area, crowd in zip(
                range(1, len(gt) + 1),
                pseudo_gt[self.gt_position].tolist(),
                gt.category.tolist(),
                gt.area.tolist(),
                gt.crowd.tolist(),
            )
        ]
        dt_anns = [  # in kept order: ids increase with the order COCOeval sorts them in
            {"id": n, "image_id": image, "category_id": cat, "score": score, "area": area, "iscrowd": 0}
            for n, image, cat, score, area in zip(
                range(1, len(kept) + 1),
                pseudo_dt.tolist(),
                self.gt.category_ids[self.dt_group % len(gt.category_ids)].tolist(),
                self.scores.tolist(),
                self.task.dt_area[kept].tolist(),
            )
        ]
        return (_index(images, gt.categories, gt_anns), _index(images, gt.categories, dt_anns))

    def iou_block(self, dt_ids: list[int], gt_ids: list[int]) -> np.ndarray:
        """IoUs of detections x GT (ids as given to the engine) of one pseudo-image/category."""
        dt_pos = np.asarray(dt_ids) - 1
        gt_pos = self.gt_position[np.asarray(gt_ids) - 1]
        ious = self.ious[int(self.dt_group[dt_pos[0]])]
        return ious[dt_pos - self.dt_start[dt_pos]][:, gt_pos - self.gt_start[gt_pos]]


def _index(images: list[dict], categories: list[dict], annotations: list[dict]) -> COCO:
    coco = COCO(print_function=_silent)
    coco.dataset = {"images": images, "categories": categories, "annotations": annotations}
    coco.createIndex()
    return coco


class _GivenIoUs(COCOeval_faster):
    """COCOeval_faster whose IoUs come from an _Evaluation instead of decoding masks."""

    def __init__(self, coco_gt: COCO, coco_dt: COCO, iou_type: str, evaluation: _Evaluation) -> None:
        super().__init__(coco_gt, coco_dt, iou_type, print_function=_silent, rle_iou_max_workers=1)
        self.params.compute_rle = False  # IoUs are given: no mask needs decoding
        self._evaluation = evaluation

    def computeIoU(self, imgId: int, catId: int) -> np.ndarray | list:  # noqa: N802 (COCOeval's)
        gt = self.gt_dataset.get_instances([imgId], [catId], True)[0][0]
        dt = self.dt_dataset.get_instances([imgId], [catId], True)[0][0]
        if not gt or not dt:
            return []
        # Rows in the engine's order (score descending, stable), as COCOeval.computeIoU has them.
        order = np.argsort([-d["score"] for d in dt], kind="mergesort")[: self.params.maxDets[-1]]
        return self._evaluation.iou_block([dt[i]["id"] for i in order], [g["id"] for g in gt])
