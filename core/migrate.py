"""Older experiment records brought to the current schema: the one place that knows their shapes.

`<experiment>/segtune.json` carries a `schema_version`. A record without one is version 1: the
flat record segtune wrote before the record was split by concern (`framework`, `model`, `metric`,
`num_samples`, ... side by side), including its own older variants:

- the search space as the path of its file (`"space": "spaces/yolo.yaml"`), before it was stored inline;
- `iters_per_epoch` as a field of its own, before adapters declared their options;
- the dataset's `yolo_yaml`, before datasets had layouts (now `layouts["ultralytics"]`);
- no budget or schedule (`num_samples` missing or 0), before segtune kept them: the budget's
  `num_samples` and the schedule's `grace_period` become null, and such a search is resumed
  with Ray's own restore (runners/search/tuner.py: restore_tuner);
- no `frameworks`/`objectives` (before several frameworks or objectives), no sampler, scheduler,
  study or confirmation fields (their defaults then: tpe, asha, the experiment's SQLite study, none).

`migrate` is the only reader of these shapes: `RunSettings.load` reads the JSON, migrates it and
builds the record; nothing else branches on a record's age. A record newer than this code is
refused (its fields may mean something this version cannot honour).

To change the schema: bump `SCHEMA_VERSION`, write `_vN_to_vN1(data) -> data` and add it to `_STEPS`.

Example:
    >>> migrate({"schema_version": 2, "seed": 0})["seed"]
    0
    >>> migrate({"schema_version": 99})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    segtune.core.errors.ExperimentError: the record is schema version 99, newer than this segtune reads (2); ...
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from segtune.core.errors import ExperimentError

SCHEMA_VERSION = 2
SCHEMA_KEY = "schema_version"


def migrate(data: dict[str, Any]) -> dict[str, Any]:
    """A record of any schema version this code knows, as the current version (a new dict).

    Args:
        data: the record's JSON as read from `segtune.json`.

    Returns:
        The same record in the current schema, `schema_version` included.

    Raises:
        ExperimentError: the record is newer than this code (upgrade segtune), or its version is not one.
    """
    version = data.get(SCHEMA_KEY, 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ExperimentError(
            f"the record's {SCHEMA_KEY} {version!r} is not a version of segtune's record; "
            f"it was not written by segtune, start a new experiment"
        )
    if version > SCHEMA_VERSION:
        raise ExperimentError(
            f"the record is schema version {version}, newer than this segtune reads "
            f"({SCHEMA_VERSION}); upgrade segtune (pip install -U segtune)"
        )
    data = copy.deepcopy(data)
    for step in _STEPS[version - 1 :]:
        data = step(data)
    data[SCHEMA_KEY] = SCHEMA_VERSION
    return data


def _v1_to_v2(flat: dict[str, Any]) -> dict[str, Any]:
    """The flat record (and its older variants, see the module docstring) split by concern."""
    space = flat.get("space") or {}
    if isinstance(space, str):  # the path of the space's file, before the space was stored inline
        space = {"source": space} if space else {}
    options = dict(flat.get("options") or {})
    if flat.get("iters_per_epoch"):  # before adapters declared their options
        options["iters_per_epoch"] = flat["iters_per_epoch"]
    recorded = bool(flat.get("num_samples"))  # 0 or missing: before segtune kept the budget
    return {
        "data": _dataset(flat["dataset"]),
        "frameworks": _frameworks(flat, space),
        "space": space,
        "objective": {"metric": flat["metric"], "mode": flat["mode"], "objectives": flat.get("objectives") or []},
        "budget": {
            "max_epochs": flat["max_epochs"],
            "num_samples": flat["num_samples"] if recorded else None,
            "budget_epochs": flat.get("budget_epochs"),
            "time_budget": flat.get("time_budget"),
        },
        "schedule": {
            "sampler": flat.get("sampler", "tpe"),
            "scheduler": flat.get("scheduler", "asha"),
            "grace_period": flat.get("grace_period") or None,
            "reduction_factor": flat.get("reduction_factor", 3.0),
        },
        "resources": {
            "gpus_per_trial": flat["gpus_per_trial"],
            "cpus_per_trial": flat["cpus_per_trial"],
            "workers": flat["workers"],
            "max_concurrent": flat.get("max_concurrent", 1),
            "max_failures": flat.get("max_failures", 0),
            "max_detections": flat["max_detections"],
        },
        "study": {
            "storage": flat.get("study_storage", ""),
            "name": flat.get("study_name", ""),
            "warm_start": flat.get("warm_start") or [],
        },
        "confirmation": {"top": flat.get("confirm_top", 0), "seeds": flat.get("confirm_seeds", 0)},
        "seed": flat.get("seed", 0),
        "options": options,
        "experiment_dir": flat.get("experiment_dir", ""),
    }


def _dataset(dataset: dict[str, Any]) -> dict[str, Any]:
    """The prepared dataset, with the YOLO data file of before layouts as its "ultralytics" layout."""
    dataset = dict(dataset)
    legacy_yaml = dataset.pop("yolo_yaml", None)
    layouts = dict(dataset.get("layouts") or {})
    if legacy_yaml and "ultralytics" not in layouts:
        layouts["ultralytics"] = legacy_yaml
    dataset["layouts"] = layouts
    return dataset


def _frameworks(flat: dict[str, Any], space: dict[str, Any]) -> list[dict[str, Any]]:
    """One entry per framework: the flat record's `frameworks` dict (several frameworks, whose
    `framework`/`model`/`weights` were empty or joined), else its one framework."""
    if flat.get("frameworks"):
        return [
            {
                "name": name,
                "backend": entry.get("backend") or "",
                "models": list(entry.get("models") or []),
                "weights": entry.get("weights"),
                "space": entry.get("space") or {},
            }
            for name, entry in flat["frameworks"].items()
        ]
    model = flat.get("model") or ""
    return [
        {
            "name": flat["framework"],
            "backend": flat.get("backend") or "",
            "models": [model] if model else [],
            "weights": flat.get("weights"),
            "space": space,
        }
    ]


# _STEPS[v - 1] brings version v to v + 1.
_STEPS: tuple[Callable[[dict[str, Any]], dict[str, Any]], ...] = (_v1_to_v2,)
assert len(_STEPS) == SCHEMA_VERSION - 1
