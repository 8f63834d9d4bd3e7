"""Ultralytics' segmentation trainer with its own validation switched off.

Ultralytics validates after every epoch (and on the last one even with `val=False`), and the trial
then scores the same images again with segtune's COCO evaluator (`YoloAdapter.predict_val`): two
passes over the val set per epoch. When the search metric is a COCO metric the first pass is
wasted, so this trainer, passed as `model.train(trainer=...)` with `val=True`, turns the validation
it calls every epoch into a no-op (with `val=False` Ultralytics would still validate the last epoch,
and log its zero-filled placeholder metrics every other epoch). Imported only after `YOLO_OFFLINE`
is set (see `YoloAdapter.__init__`).
"""

from __future__ import annotations

from ultralytics.models.yolo.segment import SegmentationTrainer


class CocoOnlyValTrainer(SegmentationTrainer):
    """No Ultralytics validation: no val losses, no native mAP, no fitness (the trial's COCO
    evaluation decides what is best; Ultralytics' early stopping is off in trials anyway)."""

    def validate(self):
        # ({}, None) is what Ultralytics' loop expects from a skipped validation: metrics merge into
        # its CSV and checkpoint, and a None fitness never triggers its early stop or NaN recovery.
        return {}, None

    def final_eval(self):
        """Ultralytics re-validates best.pt after the last epoch; the trial has already scored it."""
