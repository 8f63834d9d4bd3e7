"""runners/trial/startup.py: what a reused trial process carries from one trial to the next."""

from __future__ import annotations

import io
import logging
import sys

from segtune.runners.trial import startup


def test_a_reused_process_sends_framework_logs_to_the_new_trials_files(monkeypatch):
    """Ray gives each trial new stdout/stderr streams; a logger set up during the first trial must
    write to the second trial's, not to the first trial's closed file."""
    first_out, first_err, second_out, second_err = (io.StringIO() for _ in range(4))
    monkeypatch.setattr(sys, "stdout", first_out)
    monkeypatch.setattr(sys, "stderr", first_err)
    startup.StartupLog.begin()
    logger = logging.getLogger("segtune-test-framework")
    to_out, to_err = logging.StreamHandler(sys.stdout), logging.StreamHandler(sys.stderr)
    logger.addHandler(to_out)
    logger.addHandler(to_err)
    try:
        monkeypatch.setattr(sys, "stdout", second_out)
        monkeypatch.setattr(sys, "stderr", second_err)
        log = startup.StartupLog.begin()
        assert log.trials_before >= 1 and "previous_trial_released" in log.marks
        logger.warning("epoch 1")
        assert "epoch 1" in second_out.getvalue() and "epoch 1" in second_err.getvalue()
        assert first_out.getvalue() == first_err.getvalue() == ""
    finally:
        logger.removeHandler(to_out)
        logger.removeHandler(to_err)


def test_the_evaluator_is_built_once_per_dataset(tmp_path):
    from segtune.cocodata.synthetic import make_demo_dataset

    data = make_demo_dataset(tmp_path / "demo", n_train=2, n_val=2, image_size=32, seed=0)
    val_json = data / "annotations" / "instances_val.json"
    first = startup.shared_evaluator(val_json, "hash-a")
    assert startup.shared_evaluator(val_json, "hash-a") is first
    assert startup.shared_evaluator(val_json, "hash-b") is not first  # another dataset content
