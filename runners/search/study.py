"""The experiment's Optuna study, kept in real storage: what TPE learns, readable by anyone.

By default the study is an SQLite file in the experiment directory (`<experiment>/optuna.db`,
study name = experiment name); `--study-storage URL` puts it in any RDB Optuna accepts. The
driver is its only writer; `optuna.load_study` and `optuna-dashboard` read it during and after a
search. `StudySearch` is a Ray Tune searcher on that storage (Optuna's ask-and-tell, as Ray's
OptunaSearch does it, through public APIs only), with what Ray's OptunaSearch lacks:

- each trial's per-epoch Tune metric goes in as intermediate values (Ray already reports them);
  the end goes in by its reason (runners/search/endings.py): trials cut by ASHA or the time budget are
  PRUNED (TPE ranks them by their intermediate values instead of taking a 2-epoch score as final),
  diverged and failed trials FAIL, finished ones and those the framework stopped COMPLETE;
- user attributes link both ways: the study trial names its segtune trial, directory and end
  reason; `<experiment>/trial_<id>/optuna_trial.json` names the study trial;
- Ray's searcher snapshot keeps only Ray's side (trial id -> study trial, the sampler's state):
  a resumed run reconnects to the same study, never copies it, so every trial is in it once.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from ray.tune.search import Searcher

from segtune.core.choice import FRAMEWORK_KEY
from segtune.core.errors import ConfigError
from segtune.core.record import (
    DIVERGED_KEY,
    END_ASHA,
    END_EPOCH_BUDGET,
    END_FINISHED,
    END_FRAMEWORK,
    END_TIME_BUDGET,
    OPTUNA_TRIAL_FILE,
    trial_dir_name,
    write_json_atomic,
)
from segtune.runners.search.endings import EndLog

ABANDONED = "abandoned"  # proposed just before a driver was killed, never known to Ray


def open_storage(url: str, option: str = "--study-storage") -> optuna.storages.RDBStorage:
    """An RDB storage; any problem with the URL, its driver or the database is one line."""
    # Readers (a dashboard, load_study) briefly lock an SQLite file: wait instead of failing.
    engine_kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
    except Exception as exc:  # sqlalchemy ArgumentError/OperationalError, ImportError of a DB driver, ...
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ConfigError(
            f"{option} {url!r} cannot be opened ({reason}); give an RDB URL Optuna accepts, e.g. "
            f"sqlite:////absolute/path/optuna.db or postgresql://user:password@host/database"
        ) from None


def study_exists(storage: optuna.storages.BaseStorage, name: str) -> bool:
    return name in optuna.study.get_all_study_names(storage)


def dashboard_command(url: str) -> str:
    """The command that shows the study live (a password in the URL is not printed)."""
    import sqlalchemy

    try:
        shown = sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:  # not parseable: it was refused before a search could start
        shown = url
    return f"optuna-dashboard {shown}"


@dataclass
class StudyPlace:
    """Where the experiment's study lives and what a new one starts with."""

    url: str
    name: str
    experiment_dir: Path
    framework: str
    warm_trials: Sequence[FrozenTrial] = ()  # earlier experiments' trials (runners/search/warm_start.py)
    first_points: Sequence[dict[str, Any]] = field(default_factory=list)  # tried first, in order


class StudySearch(Searcher):
    """Ray Tune's searcher for the experiment's persistent study (see the module docstring): Optuna's
    ask-and-tell through its public API, as Ray's OptunaSearch does it (a NopPruner: Ray's scheduler
    stops trials, not Optuna), with what OptunaSearch lacks. It keeps its own study and trial map:
    OptunaSearch keeps them private.

    Args:
        space: the searched keys' Optuna distributions, or a define-by-run function of an
            `optuna.Trial` that returns fixed values (a search over several frameworks,
            search_spaces/conditional.py). Keys hold no '/': Ray's config would nest them.
        metric, mode: Ray Tune's metric and "max"/"min"; lists of both for several objectives.
        sampler: Optuna's sampler (runners/search/searcher.py: make_sampler).
        place: where the study lives and what a new one starts with.
        end_log: why each trial ended (runners/search/endings.py).
    """

    def __init__(
        self,
        space: dict | Callable[[optuna.trial.Trial], dict | None],
        metric: str | list[str],
        mode: str | list[str],
        sampler: optuna.samplers.BaseSampler,
        *,
        place: StudyPlace,
        end_log: EndLog,
    ):
        super().__init__(metric=metric, mode=mode)
        storage = open_storage(place.url)
        is_new = not study_exists(storage, place.name)
        if isinstance(mode, list):
            directions = {"directions": ["minimize" if m == "min" else "maximize" for m in mode]}
        else:
            directions = {"direction": "minimize" if mode == "min" else "maximize"}
        self.study = optuna.create_study(
            storage=storage,
            sampler=sampler,
            pruner=optuna.pruners.NopPruner(),
            study_name=place.name,
            load_if_exists=True,
            **directions,
        )
        self._storage = storage
        self._study_id = storage.get_study_id_from_name(place.name)
        self._space = space
        self._trials: dict[str, optuna.trial.Trial] = {}  # Ray's trial id -> the study trial it runs
        self._storage_ids: dict[str, int] = {}  # Ray's trial id -> that study trial's id in the storage
        self._completed: set[str] = set()  # told to the study: nothing more goes in
        self._experiment_dir = str(place.experiment_dir)
        self._restored: set[str] = set()  # trials of an earlier run of this experiment (after restore)
        self._framework = place.framework
        self._end_log = end_log
        self._best_rows: dict[str, dict[str, Any]] = {}  # several objectives: each trial's best epoch
        if is_new:
            for key, value in {
                "segtune_experiment": Path(place.experiment_dir).name,
                "framework": place.framework,
                "objective": metric,
                "mode": mode,
            }.items():
                self.study.set_user_attr(key, value)
            for trial in place.warm_trials:
                self.study.add_trial(trial)
            for point in place.first_points:  # a resumed study has them already (or has run them)
                self.study.enqueue_trial(point)  # not skip_if_exists: warm-start trials have these params

    # ---- Ray's searcher interface ----------------------------------------------------------------
    def suggest(self, trial_id: str) -> dict | None:
        known = trial_id in self._trials
        if not known:
            ot_trial = self.study.ask() if callable(self._space) else self.study.ask(fixed_distributions=self._space)
            self._trials[trial_id] = ot_trial
            self._storage_ids[trial_id] = self._storage.get_trial_id_from_study_id_trial_number(
                self._study_id, ot_trial.number
            )
        ot_trial = self._trials[trial_id]
        if callable(self._space):  # define-by-run: what it sampled, and the fixed values it returns
            fixed = self._space(ot_trial) or {}  # first: it samples the trial's parameters
            params = {**ot_trial.params, **fixed}
        else:
            params = ot_trial.params
        config = _nested(params)
        if not known:
            framework = config.get(FRAMEWORK_KEY, self._framework)
            for key, value in {
                "segtune_trial_id": trial_id,
                "trial_dir": str(self._trial_dir(trial_id)),
                "framework": framework,
            }.items():
                ot_trial.set_user_attr(key, value)
        return config

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        # Trials the study does not follow (e.g. confirmation runs), ones it has closed already, and
        # a diverged trial's placeholder row (not an epoch's score) are not intermediate values.
        if trial_id not in self._trials or trial_id in self._completed or result.get(DIVERGED_KEY):
            return
        self._link(trial_id)
        if isinstance(self.metric, list):  # several objectives: no intermediate values (Optuna has none)
            self._keep_best_row(trial_id, result)
            return
        if trial_id in self._restored:  # it repeats the epochs after its last checkpoint: the study has them
            if result.get("training_iteration") in self._frozen(trial_id).intermediate_values:
                return
        self._trials[trial_id].report(result[self.metric], result["training_iteration"])

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id not in self._trials or trial_id in self._completed:
            return
        reason = self._end_log.decide(trial_id, result, error)
        self._link(trial_id)
        ot_trial = self._trials[trial_id]
        ot_trial.set_user_attr("end_reason", reason)
        ot_trial.set_user_attr("epochs", int((result or {}).get("training_iteration") or 0))
        if isinstance(self.metric, list):
            self._tell_objectives(trial_id, ot_trial, reason, result, error)
            return
        value = (result or {}).get(self.metric)
        step = (result or {}).get("training_iteration")
        if _finite(value) and step and not result.get(DIVERGED_KEY) and not error:
            # Ray does not pass the result on which a trial is stopped (ASHA's cut, max_t) to the
            # searcher's on_trial_result: without this, the last epoch would be missing.
            if int(step) not in self._frozen(trial_id).intermediate_values:
                ot_trial.report(float(value), int(step))
        if reason in (END_FINISHED, END_FRAMEWORK) and _finite(value):
            state, values = TrialState.COMPLETE, float(value)
        elif reason in (END_ASHA, END_TIME_BUDGET, END_EPOCH_BUDGET) and self._frozen(trial_id).intermediate_values:
            # Truncated, not judged: PRUNED with its intermediate values is what TPE understands.
            state, values = TrialState.PRUNED, None
        else:
            state, values = TrialState.FAIL, None
        self.study.tell(ot_trial, values, state=state)
        self._completed.add(trial_id)

    # ---- several objectives ------------------------------------------------------------------------
    def _keep_best_row(self, trial_id: str, result: dict) -> None:
        """The row of the trial's best epoch by the first objective: its values of every objective
        are what Optuna is told (one epoch's, as the analysis ranks it)."""
        first, sign = self.metric[0], (1.0 if self.mode[0] == "max" else -1.0)
        value = result.get(first)
        if not _finite(value) or result.get(DIVERGED_KEY):
            return
        kept = self._best_rows.get(trial_id)
        if kept is None or sign * float(value) > sign * float(kept[first]):
            self._best_rows[trial_id] = {m: result.get(m) for m in self.metric}

    def _tell_objectives(
        self, trial_id: str, ot_trial: optuna.trial.Trial, reason: str, result: dict | None, error: bool
    ) -> None:
        if result and not error:
            self._keep_best_row(trial_id, result)
        row = self._best_rows.get(trial_id, {})
        values = [row.get(m) for m in self.metric]
        if reason in (END_FINISHED, END_FRAMEWORK) and all(_finite(v) for v in values):
            self.study.tell(ot_trial, [float(v) for v in values], state=TrialState.COMPLETE)
        elif reason == END_TIME_BUDGET:  # truncated, not judged
            self.study.tell(ot_trial, state=TrialState.PRUNED)
        else:
            self.study.tell(ot_trial, state=TrialState.FAIL)
        self._completed.add(trial_id)

    def save(self, checkpoint_path: str) -> None:
        """Ray's searcher snapshot: only what the storage does not hold."""
        state = {
            "study_trial_ids": dict(self._storage_ids),
            "completed": set(self._completed),
            "sampler": self.study.sampler,  # its random state: a resumed search goes on, not over
        }
        if self._best_rows:  # several objectives: each trial's best epoch so far
            state["best_rows"] = dict(self._best_rows)
        with open(checkpoint_path, "wb") as file:
            pickle.dump(state, file)

    def restore(self, checkpoint_path: str) -> None:
        """Reconnect Ray's trials to their study trials in the storage this searcher opened."""
        with open(checkpoint_path, "rb") as file:
            state = pickle.load(file)
        self.study.sampler = state["sampler"]
        self._completed = set(state["completed"])
        self._best_rows = dict(state.get("best_rows") or {})
        self._storage_ids = dict(state["study_trial_ids"])
        self._trials = {
            tid: optuna.trial.Trial(self.study, storage_id) for tid, storage_id in self._storage_ids.items()
        }
        self._restored = set(self._trials)
        for tid in self._trials:
            # The study moved on after Ray's last snapshot (a trial ended just before a kill):
            # the resumed trial repeats epochs the study has, and is not told twice.
            if self._frozen(tid).state.is_finished():
                self._completed.add(tid)
        known = set(self._storage_ids.values())
        for frozen in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            storage_id = self._storage.get_trial_id_from_study_id_trial_number(self._study_id, frozen.number)
            if storage_id not in known:  # asked after Ray's last snapshot: Ray will never run it
                self._storage.set_trial_user_attr(storage_id, "end_reason", ABANDONED)
                self.study.tell(frozen.number, state=TrialState.FAIL)

    def _trial_dir(self, trial_id: str) -> Path:
        return Path(self._experiment_dir) / trial_dir_name(trial_id)

    def _link(self, trial_id: str) -> None:
        """`optuna_trial.json` in the trial's directory, once the trial has one (a trial proposed
        just before a kill never runs, and must leave no directory behind)."""
        path = self._trial_dir(trial_id) / OPTUNA_TRIAL_FILE
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(path, {"study_name": self.study.study_name, "number": self._trials[trial_id].number})

    def _frozen(self, trial_id: str) -> FrozenTrial:
        return self._storage.get_trial(self._storage_ids[trial_id])  # one row, not the whole study


def read_study_trials(url: str, name: str) -> list[FrozenTrial]:
    """Every trial of a stored study (for analysis and warm starts); [] when there is no such study."""
    storage = open_storage(url, "study storage")
    if not study_exists(storage, name):
        return []
    return optuna.load_study(study_name=name, storage=storage).get_trials(deepcopy=False)


def _nested(params: dict[str, Any]) -> dict[str, Any]:
    """Ray's config from the study trial's parameters: an 'a/b' key is `{"a": {"b": ...}}`, as Ray's
    OptunaSearch makes it (segtune's own keys have no '/': core/choice.py)."""
    config: dict[str, Any] = {}
    for key, value in params.items():
        *parents, leaf = key.split("/")
        node = config
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    return config


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
