"""The search space of a search over several frameworks: Optuna define-by-run.

Each trial first chooses the framework, then that framework's model, then the framework's own
hyperparameters from its own space (search_spaces/<framework>(_cpu).yaml), and carries the
framework's fixed values:

    framework = trial.suggest_categorical("segtune:framework", ["yolo", "maskrcnn"])
    model     = trial.suggest_categorical("segtune:model:yolo", ["yolo11n-seg.yaml", ...])
    lr0       = trial.suggest_float("yolo:lr0", ...)        # only when framework == "yolo"

so a trial's config holds its framework's keys only (names in core/choice.py). Ray's OptunaSearch
calls the space with each new study trial and adds the returned fixed values to the config. The
union of all branches (`union`) is what the record, the live view and the analysis list as the
searched keys.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from segtune.core.choice import FRAMEWORK_KEY, model_key, param_key
from segtune.core.sections import FrameworkEntry
from segtune.search_spaces.space import SearchSpace


@dataclass(frozen=True)
class FrameworkBranch:
    """One framework's part of the space: its model choices and its own space (unprefixed keys)."""

    models: tuple[str, ...]
    space: SearchSpace


@dataclass(frozen=True)
class ConditionalSpace:
    branches: dict[str, FrameworkBranch]  # in the order the frameworks were named

    def __post_init__(self) -> None:
        if not self.branches or any(not b.models for b in self.branches.values()):
            raise ValueError("a conditional space needs frameworks, each with at least one model")

    @property
    def frameworks(self) -> list[str]:
        return list(self.branches)

    @property
    def fixed(self) -> dict[str, Any]:
        """Nothing is fixed for every trial: each framework's fixed values come with its branch."""
        return {}

    @property
    def searched(self) -> dict[str, BaseDistribution]:
        return self.union().searched

    def union(self) -> SearchSpace:
        """Every branch's keys, prefixed: the framework and model choices, then each framework's
        searched keys; its fixed values as fixed (each holds for that framework's trials only)."""
        searched: dict[str, BaseDistribution] = {FRAMEWORK_KEY: CategoricalDistribution(self.frameworks)}
        fixed: dict[str, Any] = {}
        for framework, branch in self.branches.items():
            searched[model_key(framework)] = CategoricalDistribution(list(branch.models))
        for framework, branch in self.branches.items():
            searched.update({param_key(framework, k): d for k, d in branch.space.searched.items()})
            fixed.update({param_key(framework, k): v for k, v in branch.space.fixed.items()})
        sources = " + ".join(b.space.source for b in self.branches.values())
        return SearchSpace(sources, ",".join(self.frameworks), searched, fixed)

    def __call__(self, trial) -> dict[str, Any]:
        """The define-by-run function (an optuna.Trial, or Ray's wrapper of one): samples one branch
        and returns that framework's fixed values."""
        framework = trial.suggest_categorical(FRAMEWORK_KEY, self.frameworks)
        branch = self.branches[framework]
        trial.suggest_categorical(model_key(framework), list(branch.models))
        for key, distribution in branch.space.searched.items():
            suggest(trial, param_key(framework, key), distribution)
        return {param_key(framework, k): v for k, v in branch.space.fixed.items()}


def suggest(trial, name: str, distribution: BaseDistribution) -> Any:
    """`trial.suggest_*` for a distribution (Ray records values through the suggest_* calls)."""
    if isinstance(distribution, CategoricalDistribution):
        return trial.suggest_categorical(name, list(distribution.choices))
    if isinstance(distribution, FloatDistribution):
        return trial.suggest_float(
            name, distribution.low, distribution.high, log=distribution.log, step=distribution.step
        )
    if isinstance(distribution, IntDistribution):
        return trial.suggest_int(
            name, distribution.low, distribution.high, log=distribution.log, step=distribution.step
        )
    raise TypeError(f"{name}: unsupported distribution {type(distribution).__name__}")


def conditional_space(frameworks: Sequence[FrameworkEntry]) -> ConditionalSpace:
    """The space of a recorded multi-framework search (`RunSettings.frameworks`)."""
    return ConditionalSpace(
        {entry.name: FrameworkBranch(entry.models, SearchSpace.from_dict(entry.space)) for entry in frameworks}
    )
