"""Confirmation against noise, planned: how many configurations are trained again, with which seeds.

One seed of one configuration is a noisy sample: the best of a search is partly the luckiest. After
the search, the top K configurations (by score) are trained again with S new seeds each, as ordinary
trials of the same experiment (runners/search/confirming.py proposes them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from segtune.core.choice import FRAMEWORK_KEY, param_key
from segtune.core.record import RunSettings


@dataclass(frozen=True)
class ConfirmPlan:
    top_k: int  # configurations confirmed
    seeds: int  # new seeds for each
    seed_key: str  # the adapter's params key that seeds training
    base_seed: int  # the search's --seed: confirmation seeds are base_seed + 1, + 2, ...
    # A search over several frameworks: each framework's seed key in the trial's config (core/choice.py).
    framework_seed_keys: dict[str, str] = field(default_factory=dict)

    def seed_key_for(self, config: dict[str, Any]) -> str:
        framework = config.get(FRAMEWORK_KEY)
        return self.framework_seed_keys.get(framework, self.seed_key) if framework else self.seed_key

    @property
    def trials(self) -> int:
        return self.top_k * self.seeds

    def describe(self) -> str:
        if not self.trials:
            return "confirmation: off (--confirm-top 0)"
        return (
            f"confirmation: the top {self.top_k} configuration(s) trained again with {self.seeds} new "
            f"seed(s) each ({self.trials} trials, never stopped early) after the search"
        )


def confirm_plan(settings: RunSettings) -> ConfirmPlan:
    """The confirmation trials recorded in `settings` (none with several objectives: there is no one
    best configuration to confirm)."""
    from segtune.trainers.registry import get_adapter

    top_k = 0 if settings.objective.objectives else settings.confirmation.top
    seeds = settings.confirmation.seeds if top_k else 0
    if not top_k:
        return ConfirmPlan(0, 0, "", settings.seed)
    if settings.is_multi:
        keys = {
            entry.name: param_key(entry.name, get_adapter(entry.name, entry.backend or "auto").seed_key)
            for entry in settings.frameworks
        }
        return ConfirmPlan(top_k, seeds, "", settings.seed, framework_seed_keys=keys)
    entry = settings.sole_framework
    return ConfirmPlan(top_k, seeds, get_adapter(entry.name, entry.backend).seed_key, settings.seed)


def default_confirm_top(num_samples: int, has_gpu: bool) -> int:
    """2 configurations on a CPU budget, 3 with GPUs; never more than a quarter of the search (a
    search of fewer than 4 trials confirms nothing unless asked)."""
    return min(3 if has_gpu else 2, num_samples // 4)


def chosen_confirm_top(
    confirm_top: int | None, several_objectives: bool, num_samples: int, has_gpu: bool, searched: bool
) -> int:
    """--confirm-top (None: its default); 0 for a fixed configuration (--config) and for several
    objectives (a front, no one best configuration)."""
    if not searched or several_objectives:
        return 0
    return confirm_top if confirm_top is not None else default_confirm_top(num_samples, has_gpu)


def confirmation_seeds(plan: ConfirmPlan, original_seed: Any) -> list[int]:
    """S seeds that differ from the one the configuration was searched with."""
    seeds, candidate = [], plan.base_seed
    while len(seeds) < plan.seeds:
        candidate += 1
        if candidate != original_seed:
            seeds.append(candidate)
    return seeds
