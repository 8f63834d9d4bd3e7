"""segtune: hyperparameter search for instance segmentation (YOLO11-seg, Mask R-CNN).

One import package. The repository keeps the design's folders at its top level; installed, they are
the subpackages of `segtune` (pyproject.toml maps them):

    segtune.core            the user-error type, the experiment record, the score
    segtune.cocodata        COCO data: validation, conversion, the demo set, the one evaluator
    segtune.search_spaces   search spaces (YAML) and their loader
    segtune.trainers        one adapter per framework behind `TrainerAdapter`
    segtune.runners         the search: command line -> plan -> Ray Tune/Optuna -> trials -> terminal
    segtune.analysis        ranking, report, export, evaluation of an experiment

The command is `segtune` (`python -m segtune`): `segtune tune --framework yolo`, `segtune rank ...`.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
