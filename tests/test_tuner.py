"""runners/search/tuner.py without a search: what a resume does with trial folders Ray never recorded."""

from __future__ import annotations

import json

from segtune.runners.search.tuner import UNRECORDED_DIR, set_aside_unrecorded_trials


def test_trial_folders_the_snapshot_does_not_name_are_set_aside(tmp_path):
    trial = {"trial_id": "aaa", "relative_logdir": "trial_aaa", "status": "TERMINATED"}
    (tmp_path / "experiment_state-2026-12-01_00-00-00.json").write_text(
        json.dumps({"trial_data": [[json.dumps(trial), json.dumps({})]]})
    )
    for name in ("trial_aaa", "trial_bbb"):
        (tmp_path / name / "ultralytics").mkdir(parents=True)
    moved = set_aside_unrecorded_trials(tmp_path)
    assert moved == [tmp_path / UNRECORDED_DIR / "trial_bbb"]
    assert (tmp_path / "trial_aaa").is_dir() and (tmp_path / UNRECORDED_DIR / "trial_bbb" / "ultralytics").is_dir()
    assert sorted(p.name for p in tmp_path.glob("trial_*")) == ["trial_aaa"]


def test_no_snapshot_moves_nothing(tmp_path):
    (tmp_path / "trial_aaa").mkdir()
    assert set_aside_unrecorded_trials(tmp_path) == [] and (tmp_path / "trial_aaa").is_dir()
