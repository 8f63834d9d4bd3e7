"""The one place masks and boxes are converted (cocodata/masks.py) and the one GT normalisation
(cocodata/ground_truth.py): the cleaning rules, tested once, and every reader using them."""

from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from segtune.cocodata import masks
from segtune.cocodata.ground_truth import normalise, renumber_annotation_ids
from segtune.cocodata.results import ImageRecord

SQUARE = [10.0, 10.0, 30.0, 10.0, 30.0, 30.0, 10.0, 30.0]  # 20 x 20 px


def test_polygon_cleaning_rules() -> None:
    # an odd trailing number is dropped; fewer than 3 points is dropped; the rest is kept as is
    assert masks.clean_polygons([SQUARE + [99.0]]) == [SQUARE]
    assert masks.clean_polygons([[1, 2, 3, 4], SQUARE]) == [SQUARE]
    assert masks.clean_polygons([[1, 2, 3, 4]]) == []
    with pytest.raises(masks.MaskError):
        masks.clean_polygons([5.0, 6.0])  # a flat list is not a list of polygons


def test_a_four_number_polygon_is_never_read_as_a_box() -> None:
    # pycocotools' frPyObjects decodes a list whose first entry has 4 numbers as boxes: the
    # degenerate polygon must be dropped before it reaches it
    rle = masks.to_rle([[1, 2, 3, 4], SQUARE], 64, 64)
    assert masks.area(rle) == masks.area(masks.to_rle([SQUARE], 64, 64)) > 0


def test_polygon_rle_and_uncompressed_rle_agree() -> None:
    mask = masks.to_mask([SQUARE], 40, 50)
    assert mask.shape == (40, 50) and mask.sum() == masks.area(masks.to_rle([SQUARE], 40, 50))
    compressed = mask_utils.encode(np.asfortranarray(mask))
    text = {"size": compressed["size"], "counts": compressed["counts"].decode()}
    uncompressed = {"size": [40, 50], "counts": _uncompressed_counts(mask)}
    for segmentation in (compressed, text, uncompressed):
        assert np.array_equal(masks.to_mask(segmentation, 40, 50), mask)
    assert masks.box_of(masks.to_rle([SQUARE], 40, 50)) == [10.0, 10.0, 20.0, 20.0]


def test_degenerate_polygons_give_an_empty_mask_and_wrong_sizes_raise() -> None:
    assert masks.area(masks.to_rle([[1, 2, 3, 4]], 8, 8)) == 0
    with pytest.raises(masks.MaskError, match="full resolution"):
        masks.to_rle({"size": [10, 10], "counts": "0"}, 20, 20)
    with pytest.raises(masks.MaskError, match="polygons"):
        masks.to_rle("not a mask", 8, 8)


def test_clip_box_keeps_integers_and_clips_to_the_image() -> None:
    assert masks.clip_box([-2, 3, 10, 100], 20, 50) == [0, 3, 8, 47]
    assert masks.clip_box([1.5, 0, 2, 2], 20, 50) == [1.5, 0, 2, 2]
    assert masks.xywh_to_xyxy([1, 2, 3, 4]) == [1.0, 2.0, 4.0, 6.0]


def test_encode_masks_round_trips() -> None:
    stack = np.zeros((2, 16, 24), dtype=bool)
    stack[0, 2:5, 3:9] = True
    stack[1, 10:, :4] = True
    rles = masks.encode_masks(stack)
    assert [masks.area(masks.to_rle(r, 16, 24)) for r in rles] == [18.0, 24.0]
    assert masks.encode_masks(np.zeros((0, 16, 24), dtype=bool)) == []


def test_mask_to_polygons_rasterises_back_to_the_same_pixels() -> None:
    mask = np.zeros((32, 32), dtype=np.uint8)
    yy, xx = np.mgrid[:32, :32]
    mask[(yy - 16) ** 2 + (xx - 16) ** 2 <= 9] = 1  # radius-3 disc
    again = masks.to_mask(masks.mask_to_polygons(mask), 32, 32)
    assert np.array_equal(again, mask)


def test_normalise_fills_clips_and_renumbers() -> None:
    gt = {
        "images": [
            {"id": 7, "file_name": "a.png", "width": 40, "height": 40},
            {"id": 8, "file_name": "b.png", "width": 40, "height": 40},
        ],
        "categories": [{"id": 3, "name": "thing"}],
        "annotations": [
            {"id": 0, "image_id": 7, "category_id": 3, "segmentation": [SQUARE]},
            {
                "id": 1,
                "image_id": 7,
                "category_id": 3,
                "segmentation": [SQUARE],
                "bbox": [-5, 10, 50, 20],
                "area": 400,
                "iscrowd": None,
            },
            {"id": 2, "image_id": 8, "category_id": 3, "segmentation": [SQUARE]},
        ],
    }
    out = normalise(gt, image_ids=[7])
    assert [a["id"] for a in out["annotations"]] == [1, 2]  # from 0: shifted, not reordered
    first, second = out["annotations"]
    assert first["area"] == 400.0 and first["bbox"] == [10.0, 10.0, 20.0, 20.0] and first["iscrowd"] == 0
    assert second["bbox"] == [0, 10, 40, 20] and second["iscrowd"] == 0  # clipped to the image
    assert [im["id"] for im in out["images"]] == [7] and out["categories"] == gt["categories"]
    assert gt["annotations"][0]["id"] == 0 and "area" not in gt["annotations"][0]  # input untouched
    with pytest.raises(ValueError, match="image id 9"):
        normalise({**gt, "annotations": [{"id": 1, "image_id": 9, "category_id": 3, "segmentation": []}]})


def test_renumbering_keeps_good_ids_and_repairs_missing_ones() -> None:
    good = [{"id": 4}, {"id": 9}]
    assert not renumber_annotation_ids(good) and [a["id"] for a in good] == [4, 9]
    repeated = [{"id": 3}, {"id": 3}, {}]
    assert renumber_annotation_ids(repeated) and [a["id"] for a in repeated] == [1, 2, 3]


def test_the_torchvision_reader_uses_the_same_masks_and_boxes() -> None:
    torch = pytest.importorskip("torch")
    from segtune.trainers.maskrcnn.torchvision.data import load_instances

    record = ImageRecord(1, None, 40, 40)  # type: ignore[arg-type]
    anns = [
        {"category_id": 3, "segmentation": [SQUARE + [1.0]], "bbox": [-5, 10, 50, 20]},
        {"category_id": 3, "segmentation": [[1, 2, 3, 4]]},
    ]  # degenerate: skipped
    inst = load_instances(anns, record, {3: 1})
    assert inst.masks.shape == (1, 40, 40)
    assert np.array_equal(inst.masks[0].numpy(), masks.to_mask([SQUARE], 40, 40))
    assert inst.boxes.tolist() == [[0.0, 10.0, 40.0, 30.0]] and inst.labels.tolist() == [1]
    assert torch.is_tensor(inst.boxes)


def _uncompressed_counts(mask: np.ndarray) -> list[int]:
    flat = mask.flatten(order="F")
    counts, current, run = [], 0, 0
    for value in flat:
        if value == current:
            run += 1
        else:
            counts.append(run)
            current, run = value, 1
    counts.append(run)
    return counts
