"""Confirmation against noise: the top configurations trained again with new seeds, in the same search.

One seed of one configuration is a noisy sample: the best of a search is partly the luckiest. After
the search, `ConfirmingSearcher` proposes the top K configurations (by score) again, each with S new
seeds, as ordinary trials of the same experiment: they run in parallel on free slots, are resumed
with the experiment and show in TensorBoard like any trial. Their config carries segtune's marks
(`core.record.CONFIRM_OF_KEY`, `CONFIRM_SEED_KEY`) and the new seed under the adapter's seed key.
The searcher (Optuna) never hears of them: they re-measure known points, they are not new ones.
`ConfirmationAwareASHA` never stops them: a confirmation is trained for the full budget.
"""

from __future__ import annotations

import json
import math
import os
import pickle
import tempfile
from typing import Any

from ray.tune.schedulers import ASHAScheduler, TrialScheduler
from ray.tune.search import Searcher

from segtune.core.record import CONFIRM_OF_KEY, CONFIRM_SEED_KEY, DIVERGED_KEY
from segtune.runners.plan.confirm import ConfirmPlan, confirmation_seeds


class ConfirmingSearcher(Searcher):
    """The first `search_samples` suggestions are the wrapped searcher's; once every one of those
    trials has ended, K x S confirmation trials; then FINISHED. Ray sees it as a searcher wrapper
    (it has `.searcher`), so the experiment snapshot keeps its state (`get_state`) beside the wrapped
    searcher's own, and a resumed search continues where it was."""

    def __init__(self, searcher: Searcher, search_samples: int, plan: ConfirmPlan) -> None:
        self.searcher = searcher
        self.search_samples = search_samples
        self.plan = plan
        self.suggested: dict[str, dict[str, Any]] = {}  # search trial id -> its config, in order
        self.scores: dict[str, float | None] = {}  # search trial id -> final score (None: failed)
        self.queue: list[dict[str, Any]] | None = None  # confirmations still to propose, made when the search ends
        self.issued: dict[str, dict[str, Any]] = {}  # confirmation trial id -> its config
        super().__init__(metric=searcher.metric, mode=searcher.mode)

    # ---- what Ray calls -----------------------------------------------------------------------
    @property
    def metric(self) -> str | list[str] | None:
        return self.searcher.metric  # what the wrapped searcher was set up with, at any time

    @property
    def mode(self) -> str | list[str] | None:
        return self.searcher.mode

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict, **spec) -> bool:
        return self.searcher.set_search_properties(metric, mode, config, **spec)

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if len(self.suggested) < self.search_samples:
            config = self.searcher.suggest(trial_id)
            if config == Searcher.FINISHED:  # the wrapped searcher ran out early: confirm what there is
                self.search_samples = len(self.suggested)
            elif config is not None:
                self.suggested[trial_id] = config
                return config
            else:
                return None
        if len(self.scores) < len(self.suggested):
            return None  # confirmation compares finished trials: wait for the search to end
        if self.queue is None:
            done = {(c[CONFIRM_OF_KEY], c[CONFIRM_SEED_KEY]) for c in self.issued.values()}
            self.queue = [
                c for c in self.confirmation_configs() if (c[CONFIRM_OF_KEY], c[CONFIRM_SEED_KEY]) not in done
            ]
        if self.queue:
            config = self.queue.pop(0)
            self.issued[trial_id] = config
            return config
        return Searcher.FINISHED

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id in self.suggested:
            self.searcher.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id not in self.suggested:
            return  # a confirmation trial: Optuna is not told
        self.searcher.on_trial_complete(trial_id, result=result, error=error)
        value = (result or {}).get(self.metric)
        usable = (
            not error
            and isinstance(value, (int, float))
            and math.isfinite(value)
            and not (result or {}).get(DIVERGED_KEY)
        )
        self.scores[trial_id] = float(value) if usable else None

    def on_pause(self, trial_id: str) -> None:
        if trial_id in self.suggested:
            self.searcher.on_pause(trial_id)

    def on_unpause(self, trial_id: str) -> None:
        if trial_id in self.suggested:
            self.searcher.on_unpause(trial_id)

    def planned_trials(self) -> int:
        """Search and confirmation trials this searcher will have proposed in all (an upper bound
        until the confirmations are planned: the best may be confirmed already)."""
        still = len(self.queue) if self.queue is not None else self.plan.trials
        return self.search_samples + len(self.issued) + still

    # ---- the confirmations ----------------------------------------------------------------------
    def confirmation_configs(self) -> list[dict[str, Any]]:
        """K distinct configurations with the best scores, each with S new seeds."""
        sign = -1.0 if self.mode == "max" else 1.0
        ranked = sorted(
            (t for t, s in self.scores.items() if s is not None),
            key=lambda t: (sign * self.scores[t], list(self.suggested).index(t)),
        )
        chosen, seen = [], set()
        for trial_id in ranked:
            identity = json.dumps(self.suggested[trial_id], sort_keys=True, default=str)
            if identity not in seen:
                seen.add(identity)
                chosen.append(trial_id)
        configs = []
        for trial_id in chosen[: self.plan.top_k]:
            config = self.suggested[trial_id]
            seed_key = self.plan.seed_key_for(config)
            seeds = confirmation_seeds(self.plan, config.get(seed_key, self.plan.base_seed))
            for index, seed in enumerate(seeds, 1):
                configs.append({**config, seed_key: seed, CONFIRM_OF_KEY: trial_id, CONFIRM_SEED_KEY: index})
        return configs

    # ---- state: Ray keeps `get_state` in its snapshot and saves the wrapped searcher itself ------
    def get_state(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "searcher"}

    def set_state(self, state: dict[str, Any]) -> None:
        """A resumed search may have been given more trials than the snapshot knew: the larger count
        wins, and the confirmations are planned again once the grown search has ended (those already
        proposed are not proposed twice)."""
        grown = self.search_samples > state.get("search_samples", 0)
        search_samples = max(self.search_samples, state.get("search_samples", 0))
        self.__dict__.update(state)
        self.search_samples = search_samples
        if grown:
            self.queue = None

    def save(self, checkpoint_path: str) -> None:
        """Both states in one file (Ray itself uses get_state and the wrapped searcher's save)."""
        with tempfile.TemporaryDirectory() as tmp:
            inner = os.path.join(tmp, "searcher.pkl")
            self.searcher.save(inner)
            with open(inner, "rb") as f:
                inner_bytes = f.read()
        with open(checkpoint_path, "wb") as f:
            pickle.dump({"state": self.get_state(), "searcher": inner_bytes}, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            saved = pickle.load(f)  # written by save() above, in this experiment's own directory
        self.set_state(saved["state"])
        with tempfile.TemporaryDirectory() as tmp:
            inner = os.path.join(tmp, "searcher.pkl")
            with open(inner, "wb") as f:
                f.write(saved["searcher"])
            self.searcher.restore(inner)


class ConfirmationAwareASHA(ASHAScheduler):
    """ASHA that never stops a confirmation trial early and keeps its results out of the rungs. At
    max_t it ends it as ASHA ends every trial there (a trainable that ran on past its last report
    would find its framework's own end-of-training files gone: they went into Ray's checkpoints).

    `time_attr` and `max_t` are ASHA's arguments (with ASHA's defaults), kept here as given: ASHA
    keeps its own copies private."""

    def __init__(self, *, time_attr: str = "training_iteration", max_t: int = 100, **kwargs: Any) -> None:
        super().__init__(time_attr=time_attr, max_t=max_t, **kwargs)
        self.time_attr = time_attr
        self.max_t = max_t

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        if CONFIRM_OF_KEY in (trial.config or {}):
            done = result.get(self.time_attr, 0) >= self.max_t
            return TrialScheduler.STOP if done else TrialScheduler.CONTINUE
        return super().on_trial_result(tune_controller, trial, result)

    def on_trial_complete(self, tune_controller, trial, result: dict) -> None:
        if CONFIRM_OF_KEY in (trial.config or {}):
            # Forgotten without a result for the rungs: ASHA's public "remove this trial".
            try:
                super().on_trial_remove(tune_controller, trial)
            except KeyError:  # ASHA never had it (it was not added in this run)
                pass
            return
        super().on_trial_complete(tune_controller, trial, result)
