"""`--warm-start EXPERIMENT ...`: a new search begins with what earlier experiments learned.

Their completed and pruned trials (with intermediate values) enter the new study before its first
trial, so TPE models them from the start; their best configurations are the first trials.

Each kept parameter is recorded with the NEW search's distribution (its value lies inside it):
Optuna's multivariate TPE models only parameters whose distribution is the same in every trial,
and a categorical value is stored as an index into its choices, which a changed choice list would
silently remap. A value the new space cannot hold (a parameter no longer searched, a number outside
the new range) is left out of that trial, and one warning line says how many.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState, create_trial

from segtune.core.errors import ConfigError
from segtune.core.record import SETTINGS_FILE, RunSettings
from segtune.runners.search.study import read_study_trials
from segtune.search_spaces.membership import holds
from segtune.search_spaces.space import SearchSpace

# Attributes that tie a study trial to a trial of ITS experiment (runners/search/study.py).
_OWN_ATTRS = ("segtune_trial_id", "trial_dir")


@dataclass(frozen=True)
class WarmSource:
    """An earlier experiment whose study seeds the new one."""

    path: Path
    study_url: str
    study_name: str


@dataclass(frozen=True)
class WarmStart:
    trials: list[FrozenTrial]  # ready for `study.add_trial`
    points: list[dict[str, Any]]  # the best earlier configurations, best first
    note: str  # one line: what was taken
    warning: str  # one line: parameters left out ("" when none)


def find_sources(names: list[Path], storage: Path, framework: str, metric: str, mode: str) -> list[WarmSource]:
    """Checked before anything is written: each is a segtune experiment of the same framework,
    optimised for the same metric in the same direction, with a study to read."""
    sources = []
    for name in names:
        path = Path(name).expanduser()
        if not (path / SETTINGS_FILE).is_file() and (storage / name / SETTINGS_FILE).is_file():
            path = storage / name
        if not (path / SETTINGS_FILE).is_file():
            raise ConfigError(
                f"--warm-start {name}: not an experiment (no {SETTINGS_FILE}); pass <storage>/<name> "
                f"or a name in --storage {storage}"
            )
        try:
            settings = RunSettings.load(path)
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise ConfigError(f"--warm-start {name}: {path / SETTINGS_FILE} cannot be read ({exc})") from None
        recorded = ",".join(settings.framework_names)
        if recorded != framework:
            raise ConfigError(
                f"--warm-start {name} is a {recorded} experiment; this search is {framework} "
                f"(warm-start from {framework} experiments only)"
            )
        objective = settings.objective
        if (objective.metric, objective.mode) != (metric, mode):
            raise ConfigError(
                f"--warm-start {name} optimised {objective.metric} ({objective.mode}); this search "
                f"optimises {metric} ({mode}): use the same --metric and --mode"
            )
        source = WarmSource(path.resolve(), settings.study_url(path), settings.study_name_at(path))
        if not read_study_trials(source.study_url, source.study_name):
            raise ConfigError(
                f"--warm-start {name} has no Optuna study with trials (made by an earlier segtune, "
                f"or no trial has run); choose another experiment"
            )
        sources.append(source)
    return sources


def load_warm_start(sources: list[WarmSource], space: SearchSpace, mode: str, num_points: int) -> WarmStart:
    """The sources' COMPLETE and PRUNED trials in the new space, and the `num_points` best configurations."""
    trials: list[FrozenTrial] = []
    scored: list[tuple[float, dict[str, Any]]] = []
    not_searched: collections.Counter[str] = collections.Counter()
    outside: collections.Counter[str] = collections.Counter()
    for source in sources:
        for old in read_study_trials(source.study_url, source.study_name):
            if old.state not in (TrialState.COMPLETE, TrialState.PRUNED):
                continue
            params: dict[str, Any] = {}
            distributions: dict[str, BaseDistribution] = {}
            for key, value in old.params.items():
                new = space.searched.get(key)
                if new is None:
                    not_searched[key] += 1
                elif not holds(new, value):
                    outside[key] += 1
                else:
                    params[key], distributions[key] = value, new
            if not params:
                continue
            trials.append(
                create_trial(
                    state=old.state,
                    value=old.value if old.state == TrialState.COMPLETE else None,
                    params=params,
                    distributions=distributions,
                    intermediate_values=dict(old.intermediate_values),
                    user_attrs={
                        **{k: v for k, v in old.user_attrs.items() if k not in _OWN_ATTRS},
                        "warm_start_from": source.path.name,
                        "warm_start_number": old.number,
                        "warm_start_trial_id": old.user_attrs.get("segtune_trial_id"),
                    },
                )
            )
            if old.state == TrialState.COMPLETE and old.value is not None:
                scored.append((old.value, params))
    scored.sort(key=lambda pair: pair[0], reverse=(mode == "max"))
    points: list[dict[str, Any]] = []
    for _, params in scored:
        if len(points) >= num_points:
            break
        if params not in points:
            points.append(params)
    note = (
        f"warm start: {len(trials)} trials from {', '.join(s.path.name for s in sources)}; "
        f"the best {len(points)} configuration{'s' * (len(points) != 1)} run first"
    )
    left_out = [f"{k} (not searched now, {n} trials)" for k, n in sorted(not_searched.items())]
    left_out += [f"{k} (outside the new range, {n} trials)" for k, n in sorted(outside.items())]
    warning = (
        "--warm-start: parameter values this search space cannot hold were left out: " + ", ".join(left_out)
        if left_out
        else ""
    )
    return WarmStart(trials, points, note, warning)
