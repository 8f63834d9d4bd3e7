"""End to end: a real search (Ray Tune, Optuna, ASHA, Ultralytics) on tiny synthetic data.

Nothing is mocked: the experiment comes from `python runners/tune.py` (the `yolo_experiment`
fixture), and these tests read what it left on disk.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import keys_without_ground_truth

from segtune.cocodata.evaluator import METRIC_KEYS

pytestmark = pytest.mark.e2e
MAX_EPOCHS = 4


def _results(trial_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (trial_dir / "result.json").read_text().splitlines() if line.strip()]


def _trials(experiment: Path) -> list[Path]:
    return sorted(p for p in experiment.iterdir() if p.is_dir() and p.name.startswith("trial_"))


def test_every_trial_reports_coco_metrics_each_epoch(yolo_experiment):
    trials = _trials(yolo_experiment)
    assert len(trials) >= 3
    settings = json.loads((yolo_experiment / "segtune.json").read_text())
    no_ground_truth = keys_without_ground_truth(Path(settings["data"]["val_json"]))
    assert no_ground_truth == {"segm/APl", "bbox/APl"}  # the demo's objects are small and medium
    for trial in trials:
        rows = _results(trial)
        assert [r["training_iteration"] for r in rows] == list(range(1, len(rows) + 1))
        for row in rows:
            for key in METRIC_KEYS:  # -1 exactly where the val split has no object of that size
                assert row[key] == -1 if key in no_ground_truth else 0 <= row[key] <= 100, (trial.name, key, row)
            if row["segtune/num_predictions"] == 0:  # AP of nothing is 0, whatever else was reported
                assert all(row[key] == 0 for key in METRIC_KEYS if key not in no_ground_truth), row
            assert row["epoch"] == row["training_iteration"]
            assert "yolo/mAP50-95(M)" in row and "yolo/train/seg_loss" in row and "yolo/lr/pg0" in row
            # Ultralytics' own Ray Tune callback is off: its dict has 'metrics/...' keys at top level
            assert not any(key.startswith("metrics/") for key in row)


def test_asha_stopped_a_trial_early(yolo_experiment):
    epochs = {t.name: len(_results(t)) for t in _trials(yolo_experiment)}
    assert max(epochs.values()) == MAX_EPOCHS, epochs
    stopped = [name for name, n in epochs.items() if n < MAX_EPOCHS]
    assert stopped, f"ASHA stopped nothing: {epochs}"
    state = json.loads(next(yolo_experiment.glob("experiment_state-*.json")).read_text())
    assert "TERMINATED" in json.dumps(state) and "ERROR" not in json.dumps(state)
    for trial in _trials(yolo_experiment):
        assert not (trial / "error.txt").exists()


def test_checkpoints_are_resumable_and_pruned(yolo_experiment):
    import torch

    for trial in _trials(yolo_experiment):
        checkpoints = sorted(trial.glob("checkpoint_*"))
        assert 1 <= len(checkpoints) <= 2, checkpoints  # best and latest only
        latest = checkpoints[-1] / "last.pt"
        ckpt = torch.load(latest, map_location="cpu", weights_only=False)
        assert ckpt["optimizer"] is not None  # a training checkpoint, not a stripped inference file
        assert ckpt["epoch"] + 1 == len(_results(trial))


def test_tensorboard_has_per_epoch_metrics(yolo_experiment):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    for trial in _trials(yolo_experiment):
        events = list(trial.glob("events.out.tfevents.*"))
        assert events, f"no TensorBoard file in {trial}"
        acc = EventAccumulator(str(events[0]))
        acc.Reload()
        steps = [e.step for e in acc.Scalars("ray/tune/segm/AP")]
        assert steps == list(range(1, len(_results(trial)) + 1))


def test_settings_and_summary(yolo_experiment):
    settings = json.loads((yolo_experiment / "segtune.json").read_text())
    assert [f["name"] for f in settings["frameworks"]] == ["yolo"] and settings["budget"]["max_epochs"] == MAX_EPOCHS
    assert Path(settings["data"]["layouts"]["ultralytics"]).is_file()
    stdout = (yolo_experiment.parent / "yolo-e2e.stdout.txt").read_text()
    assert "best trial: trial_" in stdout and "tensorboard --logdir" in stdout
    for trial in _trials(yolo_experiment):
        params = json.loads((trial / "params.json").read_text())
        assert params["seed"] == 0 and params["optimizer"] in ("SGD", "AdamW")


def test_terminal_output_is_compact(yolo_experiment):
    """Not a terminal: plain lines, one when a trial starts and one when it ends (with its reason),
    a progress line a minute, then the summary — none of Ray's tables or its temporary paths."""
    import re

    stdout = (yolo_experiment.parent / "yolo-e2e.stdout.txt").read_text()
    stderr = (yolo_experiment.parent / "yolo-e2e.stderr.txt").read_text()
    output = stdout + stderr
    for ray_noise in (
        "╭",
        "│ Trial name",
        "Trial status:",
        "Current best trial",
        "/ray/session_",
        "Trial task failed",
        "A new study created",
    ):
        assert ray_noise not in output, ray_noise
    trials = [t.name for t in _trials(yolo_experiment)]
    lines = stdout.splitlines()
    starts = [line for line in lines if re.match(r"\[\s*[\d:]+\] trial_\w+ started ", line)]
    ends = [
        line for line in lines if re.match(r"\[\s*[\d:]+\] trial_\w+ (finished|stopped early) \d+/\d+  best ", line)
    ]
    progress = [line for line in lines if re.match(r"\[\s*[\d:]+\] \d+/<=\d+ epochs ", line)]
    assert sorted(line.split()[2] for line in starts) == trials
    assert sorted(line.split()[2] for line in ends) == trials  # one end line per trial, with its reason
    assert any(f"finished {MAX_EPOCHS}/{MAX_EPOCHS}" in line for line in ends)
    assert any("stopped early" in line for line in ends)
    assert all("box=" in line and "lr0=" in line for line in starts + ends)  # the first searched keys
    assert progress and progress[-1].split("·")[1].strip() == f"{len(trials)}/{len(trials)} ended, 0 running"
    *hours, minutes, _ = (int(part) for part in progress[-1].split("]")[0].strip("[ ").split(":"))
    assert len(progress) <= 60 * sum(hours) + minutes + 2  # at most one a minute, and the last
    assert "best trial: trial_" in stdout
    others = [line for line in lines if line not in starts + ends + progress]
    assert len(others) <= 20, stdout  # the header and the closing summary
    assert all(len(line) <= 120 for line in starts + ends + progress)
    assert stderr.count("\n") <= 2, stderr  # Ray's own warnings, if any (e.g. a slow experiment sync)


def test_trial_processes_are_reused_and_startup_recorded(yolo_experiment):
    """YOLO allows reused trial processes: the search runs one trial at a time, so later trials run in
    the process of an earlier one; each trial records where its start-up time went and its device."""
    startups = {t.name: json.loads((t / "startup.json").read_text()) for t in _trials(yolo_experiment)}
    fresh_pids = {s["pid"] for s in startups.values() if s["trials_before_in_process"] == 0}
    reused = [s for s in startups.values() if s["trials_before_in_process"] > 0]
    assert reused and all(s["pid"] in fresh_pids for s in reused)
    for name, s in startups.items():
        marks = [
            s["process_start"],
            s["trial_start"],
            s["imports_done"],
            s["adapter_built"],
            s["evaluator_ready"],
            s["first_epoch_trained"],
        ]
        assert marks == sorted(marks), (name, s)
        assert set(s["adapter"]) >= {"framework_imported", "model_built", "data_ready", "first_batch"}
        for row in _results(yolo_experiment / name):
            assert row["segtune/device"] == "cpu" and row["segtune/amp"] == 0 and row["segtune/gpu_uuid"] == ""
