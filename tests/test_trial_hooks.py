"""runners/trial: the loop's order of hooks, the hooks that keep state, and the seam by which tests add hooks.

The trial loop with a real framework is tested by every end-to-end search (test_e2e_yolo.py ...)
and, with faults injected, by test_failures.py; here it runs with a stand-in adapter, so that the
order of its phases and what it reports can be checked exactly.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fault_hooks import Fault, fault_env

from segtune.core.errors import ConfigError
from segtune.core.record import DIVERGED_KEY, FAILURE_KEY
from segtune.core.score import SCORE_KEY, WINDOW_KEY
from segtune.runners.trial.hooks import (
    EXTRA_HOOKS_ENV,
    SCORE_STATE_FILE,
    DivergenceHook,
    ScoreHook,
    StopTraining,
    TrialHook,
    TrialStart,
    extra_hooks,
)
from segtune.runners.trial.loop import TrialLoop
from segtune.trainers.base import TrainingDiverged


class _Recorder(TrialHook):
    """Writes down every phase it sees, and adds one entry to each row."""

    def __init__(self, name: str, calls: list[str]) -> None:
        self.name = name
        self.calls = calls

    def before_train(self, start: TrialStart) -> None:
        self.calls.append(f"{self.name}.before_train")
        self.restored = start.checkpoint and (start.checkpoint / f"{self.name}.txt").read_text()

    def epoch_trained(self, epoch: int) -> None:
        self.calls.append(f"{self.name}.epoch_trained({epoch})")

    def after_epoch(self, epoch, native, row) -> None:
        self.calls.append(f"{self.name}.after_epoch({epoch})")
        row[self.name] = len(row)

    def save(self, directory: Path) -> None:
        self.calls.append(f"{self.name}.save")
        (directory / f"{self.name}.txt").write_text(self.name)

    def after_report(self, epoch: int) -> None:
        self.calls.append(f"{self.name}.after_report({epoch})")

    def after_diverged(self, error, row) -> None:
        self.calls.append(f"{self.name}.after_diverged")
        row[self.name] = str(error)


class _Adapter:
    """Stands in for a framework: 'trains' `epochs` epochs, then optionally diverges."""

    def __init__(self, epochs: int, diverge: bool = False) -> None:
        self.epochs = epochs
        self.diverge = diverge

    def train(self, on_epoch_end, resume_from=None) -> None:
        for epoch in range(1, self.epochs + 1):
            on_epoch_end(epoch, {"loss": 1.0 / epoch})
        if self.diverge:
            raise TrainingDiverged("loss is NaN")


@pytest.fixture
def reports(monkeypatch) -> list[tuple[dict, list[str] | None]]:
    """What the loop hands to `tune.report`: each row, and the files of its checkpoint."""
    from ray import tune

    made: list[tuple[dict, list[str] | None]] = []

    def report(row, checkpoint=None):
        files = sorted(p.name for p in Path(checkpoint.path).iterdir()) if checkpoint is not None else None
        made.append((dict(row), files))

    monkeypatch.setattr(tune, "report", report)
    monkeypatch.setattr(tune, "get_checkpoint", lambda: None)  # a fresh trial
    return made


def test_the_loop_calls_each_phase_over_every_hook_in_order_and_reports_once_an_epoch(tmp_path, reports):
    calls: list[str] = []
    hooks = [_Recorder("a", calls), _Recorder("b", calls)]
    TrialLoop(_Adapter(epochs=2), hooks).run(tmp_path, tmp_path)
    per_epoch = [
        "a.epoch_trained({e})",
        "b.epoch_trained({e})",
        "a.after_epoch({e})",
        "b.after_epoch({e})",
        "a.save",
        "b.save",
        "a.after_report({e})",
        "b.after_report({e})",
    ]
    assert calls == ["a.before_train", "b.before_train", *(c.format(e=e) for e in (1, 2) for c in per_epoch)]
    assert reports == [({"a": 0, "b": 1}, ["a.txt", "b.txt"])] * 2


def test_a_resumed_trial_hands_its_hooks_the_checkpoint_they_saved(tmp_path, reports, monkeypatch):
    from ray import tune

    saved = tmp_path / "checkpoint"
    saved.mkdir()
    _Recorder("a", []).save(saved)
    monkeypatch.setattr(tune, "get_checkpoint", lambda: tune.Checkpoint.from_directory(saved))
    hook = _Recorder("a", [])
    TrialLoop(_Adapter(epochs=1), [hook]).run(tmp_path, tmp_path)
    assert hook.restored == "a" and len(reports) == 1


def test_a_diverged_trial_ends_with_one_row_from_its_hooks(tmp_path, reports):
    calls: list[str] = []
    TrialLoop(_Adapter(epochs=1, diverge=True), [_Recorder("a", calls)]).run(tmp_path, tmp_path)
    assert calls[-1] == "a.after_diverged"
    assert reports[-1] == ({"a": "loss is NaN"}, None)


def test_a_hook_can_end_training_like_a_frameworks_early_stopping(tmp_path, reports):
    class StopAtTwo(TrialHook):
        def epoch_trained(self, epoch: int) -> None:
            if epoch == 2:
                raise StopTraining()

    calls: list[str] = []
    TrialLoop(_Adapter(epochs=3), [StopAtTwo(), _Recorder("a", calls)]).run(tmp_path, tmp_path)
    assert len(reports) == 1 and "a.after_epoch(2)" not in calls  # epoch 2 is not reported, no error


def test_the_divergence_row_has_the_reason_and_the_worst_score():
    hook = DivergenceHook("segm/AP", "max")
    row: dict = {}
    hook.after_epoch(1, {}, row)
    assert row == {DIVERGED_KEY: 0}
    hook.after_report(1)
    hook.after_diverged(TrainingDiverged("loss is inf"), row)
    assert row["epoch"] == 2 and row[DIVERGED_KEY] == 1 and row[FAILURE_KEY] == "diverged: loss is inf"
    assert row["segm/AP"] == row[SCORE_KEY] == row[WINDOW_KEY] == 0.0 and row["bbox/AP"] == 0.0
    low = DivergenceHook("yolo/val/seg_loss", "min")
    low.after_diverged(TrainingDiverged("nan"), row)
    assert row["yolo/val/seg_loss"] == row[SCORE_KEY] == 1e30 and row["epoch"] == 1


def test_the_score_goes_on_after_a_resume(tmp_path):
    whole, first = ScoreHook("segm/AP", "max"), ScoreHook("segm/AP", "max")
    rows = []
    for epoch, value in enumerate([0.1, 0.5, 0.2, 0.4], start=1):
        row = {"segm/AP": value}
        whole.after_epoch(epoch, {}, row)
        rows.append(row)
        if epoch <= 2:
            first.after_epoch(epoch, {}, {"segm/AP": value})
    first.save(tmp_path)
    assert (tmp_path / SCORE_STATE_FILE).is_file()
    resumed = ScoreHook("segm/AP", "max")
    resumed.before_train(TrialStart(tmp_path, tmp_path, checkpoint=tmp_path))
    for epoch, value in [(3, 0.2), (4, 0.4)]:
        row = {"segm/AP": value}
        resumed.after_epoch(epoch, {}, row)
        assert row == rows[epoch - 1]
    missing = {}
    ScoreHook("segm/AP", "max").after_epoch(1, {}, missing)  # no metric in the row: its worst value
    assert missing["segm/AP"] == 0.0 and missing[SCORE_KEY] == 0.0


# ---- the seam for hooks that tests add ---------------------------------------------------------------
def test_extra_hooks_come_from_the_environment(monkeypatch):
    monkeypatch.delenv(EXTRA_HOOKS_ENV, raising=False)
    assert extra_hooks() == []
    monkeypatch.setenv(*fault_env("raise@3:once").popitem())
    [hook] = extra_hooks()
    assert type(hook).__name__ == "Fault" and (hook.kind, hook.epoch, hook.scope) == ("raise", 3, "once")
    two = extra_hooks(f"{fault_env('exit@1').popitem()[1]} ; segtune.runners.trial.hooks:TrialHook")
    assert [type(h).__name__ for h in two] == ["Fault", "TrialHook"]


@pytest.mark.parametrize(
    "entry, says",
    [
        ("tests/fault_hooks.py:Fault=raise@1", "not an absolute path"),
        ("segtune.runners.trial.hooks", "names no hook"),
        ("segtune.runners.trial.hooks:NoSuchHook", "has no 'NoSuchHook'"),
        ("segtune.runners.trial.hooks:worst_value=max", "made a float, not a TrialHook"),
    ],
)
def test_a_bad_extra_hook_is_refused_with_the_fix(entry, says):
    with pytest.raises(ConfigError, match=says):
        extra_hooks(entry)


def test_a_fault_of_scope_once_hits_each_trial_once(tmp_path):
    start = TrialStart(tmp_path / "trial", tmp_path, checkpoint=None)
    start.trial_dir.mkdir()
    fault = Fault("raise@2:once")
    fault.before_train(start)
    fault.epoch_trained(1)
    with pytest.raises(RuntimeError, match="injected fault at epoch 2"):
        fault.epoch_trained(2)
    retry = Fault("raise@2:once")  # the trial's next attempt
    retry.before_train(start)
    retry.epoch_trained(2)
    stop = Fault("stop@1")
    stop.before_train(start)
    with pytest.raises(StopTraining):
        stop.epoch_trained(1)
