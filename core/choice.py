"""Which framework a trial trained: the keys of a multi-framework trial's config, read back.

In a search over several frameworks (`RunSettings.frameworks`, `is_multi`) every trial's config says what
it chose, in flat keys (search_spaces/conditional.py samples them):

    segtune:framework        the framework, e.g. "yolo"
    segtune:model:<fw>       its model, e.g. "yolo11s-seg.yaml" (one key per framework: Optuna needs
                             a name per set of choices)
    <fw>:<key>               the framework's own hyperparameters, e.g. "yolo:lr0",
                             "maskrcnn:SOLVER.BASE_LR" (prefixed: two frameworks may share a name
                             with different ranges, which one Optuna study cannot hold)

The separator is ':' rather than '/': Ray's OptunaSearch turns 'a/b' keys into nested dicts.
`for_trial` turns such a config back into what a single-framework experiment of the chosen
framework would have: its settings (backend, model, weights, space) and its own params, so the
trial loop, the export and the model card work as they do for one framework. A single-framework
experiment's configs pass through unchanged. Imports nothing of segtune but the record.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from segtune.core.record import RunSettings

FRAMEWORK_KEY = "segtune:framework"
SEPARATOR = ":"


def model_key(framework: str) -> str:
    return f"segtune{SEPARATOR}model{SEPARATOR}{framework}"


def param_key(framework: str, key: str) -> str:
    return f"{framework}{SEPARATOR}{key}"


def chosen_framework(settings: RunSettings, config: Mapping[str, Any]) -> str:
    """The framework of a trial: the search's one, or the one its config chose."""
    if not settings.is_multi:
        return settings.sole_framework.name
    framework = config.get(FRAMEWORK_KEY)
    if framework not in settings.framework_names:
        raise KeyError(
            f"the trial's config names no framework of this search ({FRAMEWORK_KEY}={framework!r}; "
            f"the search has {', '.join(settings.framework_names)})"
        )
    return str(framework)


def own_params(framework: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """The framework's hyperparameters of a multi-framework config, without the prefix."""
    prefix = param_key(framework, "")
    return {key[len(prefix) :]: value for key, value in config.items() if key.startswith(prefix)}


def for_trial(settings: RunSettings, config: Mapping[str, Any]) -> tuple[RunSettings, dict[str, Any]]:
    """(the settings of a single-framework experiment of the trial's framework, its own params)."""
    if not settings.is_multi:
        return settings, dict(config)
    entry = settings.framework_entry(chosen_framework(settings, config))
    model = str(config.get(model_key(entry.name)) or entry.model)
    single = dataclasses.replace(entry, models=(model,) if model else ())
    return dataclasses.replace(settings, frameworks=(single,), space=dict(entry.space)), own_params(entry.name, config)


def trial_framework(settings: RunSettings, config: Mapping[str, Any]) -> tuple[str, str]:
    """(framework, model) of a trial for tables; ("", "") when a multi-framework config names none
    (a trial whose config was never read)."""
    try:
        single, _ = for_trial(settings, config)
    except KeyError:
        return "", ""
    return single.sole_framework.name, single.sole_framework.model


def describe_frameworks(settings: RunSettings) -> str:
    """e.g. "yolo (yolo11n-seg.yaml, yolo11s-seg.yaml) or maskrcnn (torchvision: maskrcnn_resnet18_fpn)"."""
    if not settings.is_multi:
        entry = settings.sole_framework
        return f"{entry.name}{f' ({entry.backend})' if entry.backend else ''}, model {entry.model}"
    parts = []
    for entry in settings.frameworks:
        backend = f"{entry.backend}: " if entry.backend else ""
        weights = f"; weights {entry.weights}" if entry.weights else ""
        parts.append(f"{entry.name} ({backend}{', '.join(entry.models)}{weights})")
    return " or ".join(parts)
