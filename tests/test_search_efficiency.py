"""bench/search_efficiency.py's figures (bench/efficiency_table.py) and its scoring of Ultralytics'
checkpoints with segtune's evaluator (bench/ultralytics_tuners.py). The benchmark itself is run by
hand (`python bench/search_efficiency.py --quick`)."""

from __future__ import annotations

import pytest

from bench.efficiency_table import best_so_far, epochs_to_reach, format_table, method_rows, verdict


def record(run: str, epoch: int, time: float, ap: float) -> dict:
    return {"run": run, "epoch": epoch, "time": time, "segm/AP": ap, "bbox/AP": ap / 2}


def cell(method: str, seed: int, aps: list[float], confirmed: float) -> dict:
    """A search of one trial whose epochs scored `aps`, in order."""
    return {
        "method": method,
        "seed": seed,
        "records": [record("t", i + 1, 100.0 + i, ap) for i, ap in enumerate(aps)],
        "search_s": 60.0,
        "confirm": {"segm/AP": confirmed, "bbox/AP": confirmed / 2, "wall_s": 30.0},
    }


def test_best_so_far_orders_concurrent_trials_by_time():
    records = [record("a", 1, 10, 5.0), record("a", 2, 30, 1.0), record("b", 1, 20, 7.0), record("b", 2, 40, 9.0)]
    assert best_so_far(records) == [(1, 5.0), (2, 7.0), (3, 7.0), (4, 9.0)]
    assert epochs_to_reach(best_so_far(records), 7.0) == 2
    assert epochs_to_reach(best_so_far(records), 9.5) is None


def test_rows_race_to_random_searchs_mean_final_best():
    cells = [
        cell("segtune-random", 0, [0, 2, 4, 8], 7.0),
        cell("segtune-random", 1, [0, 4, 4, 4], 5.0),  # target 6
        cell("segtune", 0, [0, 6, 9, 9], 10.0),
        cell("segtune", 1, [7, 7, 7, 7], 8.0),
        cell("ultralytics-genetic", 0, [0, 0, 1, 5], 6.0),
        cell("ultralytics-genetic", 1, [0, 0, 0, 0], 4.0),
    ]
    rows = {r["method"]: r for r in method_rows(cells, ["segtune", "segtune-random", "ultralytics-genetic", "x"])}
    assert set(rows) == {"segtune", "segtune-random", "ultralytics-genetic"}
    assert rows["segtune"]["target"] == pytest.approx(6.0)
    assert rows["segtune"]["epochs_to_target"] == pytest.approx(1.5) and rows["segtune"]["reached"] == 2  # 2 and 1
    assert rows["segtune-random"]["reached"] == 1 and rows["segtune-random"]["epochs_to_target"] == 4
    assert rows["ultralytics-genetic"]["reached"] == 0 and rows["ultralytics-genetic"]["epochs_to_target"] is None
    assert rows["segtune"]["confirmed"] == pytest.approx((9.0, 2**0.5))
    assert rows["segtune"]["epochs_spent"] == 4

    table = format_table(list(rows.values()), {"segtune": "segtune default"})
    lines = table.splitlines()
    assert len(lines) == 2 + 3
    assert lines[2].startswith("| segtune default | 2 | 4 | ") and "| 9.0 ± 1.4 |" in lines[2]
    assert "never (0/2)" in lines[4]

    said = verdict(list(rows.values()), "segtune", ["ultralytics-genetic", "ultralytics-ray"])
    assert said[0].startswith("segtune reached random search's final best (6.0) after 2 epochs (2/2 seeds), 0.38x")
    assert said[0].endswith("goal (<= 0.5x) met")
    assert said[1].startswith("segtune vs ultralytics-genetic: confirmed segm/AP 9.0 ± 1.4 vs 5.0 ± 1.4")
    assert said[1].endswith("beats it by 4.0")
    assert len(said) == 2  # no ultralytics-ray cells: nothing said about it


def test_ultralytics_checkpoints_are_scored_by_segtunes_evaluator(tmp_path, small_coco):
    """An epoch checkpoint as Ultralytics writes it goes through segtune's prediction path and
    evaluator; the tuner's own copies (project/tune) are not scored twice."""
    import os

    os.environ.setdefault("YOLO_OFFLINE", "1")
    import torch
    from ultralytics import YOLO

    from bench.ultralytics_tuners import prepare, score_checkpoints

    dataset = prepare(small_coco, tmp_path / "cache")
    model = YOLO("yolo11n-seg.yaml", task="segment").model
    for run in ("multitrain/data", "tune"):
        weights = tmp_path / "project" / run / "weights"
        weights.mkdir(parents=True)
        torch.save({"model": model, "epoch": 0}, weights / "epoch0.pt")
    records = score_checkpoints(dataset, tmp_path / "project", imgsz=64)
    assert [(r["run"], r["epoch"]) for r in records] == [("multitrain/data", 1)]
    assert 0.0 <= records[0]["segm/AP"] <= 100.0 and 0.0 <= records[0]["bbox/AP"] <= 100.0


def test_seed_spread_noise_figures():
    """bench/seed_spread.py: the differences seed noise alone explains, from the seeds' scores."""
    from bench.seed_spread import noise_figures

    figures = noise_figures([30.0, 34.0, 32.0], confirm_seeds=2)
    assert figures["mean"] == pytest.approx(32.0) and figures["sd"] == pytest.approx(2.0)
    assert figures["noise_single"] == pytest.approx(1.96 * 2**0.5 * 2.0)
    assert figures["noise_confirmed"] == pytest.approx(1.96 * 2.0)
    with pytest.raises(ValueError):
        noise_figures([30.0])
