"""`analysis/evaluate.py` on the user's own JSON scores predictions exactly as the trials do (against
the prepared val JSON), on ground truth with an exporter's quirks: image and annotation ids from 0,
an empty placeholder category, boxes reaching past the image border."""

from __future__ import annotations

import json

import pytest
from known_outputs import BOX_OVERHANG, write_quirky_coco

from segtune.analysis.evaluate import main as evaluate_main
from segtune.cocodata import masks
from segtune.cocodata.evaluator import CocoEvaluator
from segtune.cocodata.prepare import prepare_dataset


def _predictions(gt: dict) -> list[dict]:
    """Every object found with its mask and its tight box (inside the image, as models predict),
    one missed, one found twice, and a false positive: not a perfect score, so that the numbers
    compared below are not all 100."""
    sizes = {im["id"]: (im["height"], im["width"]) for im in gt["images"]}
    predictions = []
    for k, ann in enumerate(gt["annotations"][1:]):
        rle = masks.to_rle(ann["segmentation"], *sizes[ann["image_id"]])
        predictions.append(
            {
                "image_id": ann["image_id"],
                "category_id": ann["category_id"],
                "score": 0.5 + k / 100,
                "segmentation": ann["segmentation"],
                "bbox": masks.box_of(rle),
            }
        )
    predictions.append({**predictions[0], "score": 0.99})
    predictions.append({**predictions[1], "category_id": 3 if predictions[1]["category_id"] != 3 else 1, "score": 0.98})
    return predictions


def _evaluate(gt_json, predictions_json, capsys) -> dict:
    assert evaluate_main([str(gt_json), str(predictions_json)]) == 0
    return json.loads(capsys.readouterr().out)


def test_users_json_and_prepared_val_json_give_the_same_numbers(tmp_path, capsys):
    data = write_quirky_coco(tmp_path / "boards")
    prepared = prepare_dataset(data, cache_dir=tmp_path / "cache", log=lambda _: None)
    users_json = data / "annotations" / "instances_val.json"
    gt = json.loads(users_json.read_text())
    assert min(a["id"] for a in gt["annotations"]) == 0 and min(im["id"] for im in gt["images"]) == 0
    assert any(
        a["bbox"][0] + a["bbox"][2] > im["width"]
        for a in gt["annotations"]
        for im in gt["images"]
        if im["id"] == a["image_id"]
    ), "no box past the border"
    predictions_json = tmp_path / "predictions.json"
    predictions_json.write_text(json.dumps(_predictions(gt)))

    users = _evaluate(users_json, predictions_json, capsys)
    prepared_val = _evaluate(prepared.val_json, predictions_json, capsys)
    assert users == prepared_val
    trial = CocoEvaluator(prepared.val_json).evaluate(_predictions(gt))  # what a trial reports
    assert {k: users[k] for k in trial} == pytest.approx(trial)
    assert 50 < users["segm/AP"] < 100 and users["bbox/AP75"] == pytest.approx(users["segm/AP75"])


def test_a_box_past_the_border_is_no_miss(tmp_path):
    """The object is wholly found (tight box, exact mask): a GT box left reaching past the border
    would make its box IoU (w / (w + overhang)) fail the higher thresholds."""
    data = write_quirky_coco(tmp_path / "boards", n_train=1, n_val=1)
    gt = json.loads((data / "annotations" / "instances_val.json").read_text())
    past = [a for a in gt["annotations"] if a["bbox"][0] + a["bbox"][2] > gt["images"][0]["width"]]
    assert len(past) == 1 and past[0]["bbox"][2] > BOX_OVERHANG
    predictions = []
    for ann in gt["annotations"]:
        rle = masks.to_rle(ann["segmentation"], gt["images"][0]["height"], gt["images"][0]["width"])
        predictions.append(
            {
                "image_id": ann["image_id"],
                "category_id": ann["category_id"],
                "score": 0.9,
                "segmentation": ann["segmentation"],
                "bbox": masks.box_of(rle),
            }
        )
    metrics = CocoEvaluator(gt).evaluate(predictions)
    assert metrics["bbox/AP"] == pytest.approx(100.0) and metrics["segm/AP"] == pytest.approx(100.0)
