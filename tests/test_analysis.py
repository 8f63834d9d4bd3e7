"""After the search: rank, report and export on a real experiment (and on copies of it).

The experiment is the session's real YOLO search (`yolo_experiment` in conftest.py: Ray Tune + Optuna
+ ASHA + Ultralytics on tiny synthetic data); tests never write into it. Statuses a short real search
cannot produce on demand (failed, diverged, running, a guaranteed ASHA stop) come from a hand-modified
copy. Fast unit tests of the reader need no search at all.
"""

from __future__ import annotations

import csv
import html
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from segtune.analysis.ranking import rank_trials
from segtune.analysis.trials import TrialSummary, load_experiment, read_results
from segtune.core.score import SCORE_KEY, best_window

REPO_ROOT = Path(__file__).resolve().parents[1]
e2e = pytest.mark.e2e


def _run(script: str, *args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, script, *map(str, args)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _snapshot(directory: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p.relative_to(directory)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in directory.rglob("*")
        if p.is_file()
    }


def _one_error_line(proc: subprocess.CompletedProcess, prog: str) -> None:
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), proc.stderr


# ---- fixtures (module scope: copies of the session's experiment) ------------------------------------
@pytest.fixture(scope="module")
def moved_experiment(yolo_experiment, tmp_path_factory) -> Path:
    """The whole experiment copied to another path, as if moved to another machine."""
    target = tmp_path_factory.mktemp("moved") / "copied-exp"
    shutil.copytree(yolo_experiment, target)
    return target


@pytest.fixture(scope="module")
def modified_experiment(yolo_experiment, tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A copy (without weights) whose four trials are made failed, diverged, running and stopped by the time budget."""
    target = tmp_path_factory.mktemp("modified") / "modified-exp"
    shutil.copytree(yolo_experiment, target, ignore=shutil.ignore_patterns("*.pt"))
    trials = sorted(p for p in target.iterdir() if p.is_dir() and p.name.startswith("trial_"))[:4]
    while len(trials) < 4:  # a smaller search: copies of a trial, unknown to Ray's snapshot (read from files)
        trials.append(target / f"trial_copy{len(trials)}")
        shutil.copytree(trials[0], trials[-1])
    roles = dict(zip(("failed", "diverged", "running", "stopped"), (t.name for t in trials)))
    statuses = {roles["failed"]: "ERROR", roles["running"]: "RUNNING", roles["stopped"]: "TERMINATED"}

    def rewrite(trial: str, keep: int, last: dict | None = None, tail: str = "") -> None:
        rows = read_results(target / trial)[:keep]
        rows[-1].update(last or {})
        (target / trial / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows) + tail)

    (target / roles["failed"] / "error.txt").write_text(
        "Failure # 1\nTraceback (most recent call last):\n  File 'x.py'\nRuntimeError: CUDA out of memory (test)\n"
    )
    rewrite(roles["failed"], 1, {"done": False})
    first = read_results(target / roles["diverged"])[0]  # every trial has its first epoch
    diverged_row = dict(
        first,
        **{
            "training_iteration": 2,
            "epoch": 2,
            "segtune/diverged": 1,
            "done": True,
            "segtune/failure": "diverged: loss is not finite at epoch 2",
        },
    )
    (target / roles["diverged"] / "result.json").write_text(json.dumps(first) + "\n" + json.dumps(diverged_row) + "\n")
    rewrite(roles["running"], 1, {"done": False}, tail='{"segm/AP": 0.0, "training_it')  # half-written line
    rewrite(roles["stopped"], 1, {"done": True})
    for trial in roles.values():  # the driver's records of how the real trials ended no longer hold
        (target / trial / "end_reason.json").unlink(missing_ok=True)
    (target / roles["stopped"] / "end_reason.json").write_text(json.dumps({"reason": "time_budget", "epochs": 1}))

    state_file = next(target.glob("experiment_state-*.json"))
    state = json.loads(state_file.read_text())
    for entry in state["trial_data"]:
        trial_state, metadata = json.loads(entry[0]), json.loads(entry[1])
        name = f"trial_{trial_state['trial_id']}"
        if name in statuses:
            trial_state["status"] = statuses[name]
        if name == roles["failed"]:
            metadata["error_filename"] = "error.txt"
        entry[0], entry[1] = json.dumps(trial_state), json.dumps(metadata)
    state_file.write_text(json.dumps(state))
    return target, {k: v.removeprefix("trial_") for k, v in roles.items()}


# ---- unit tests (no search) ----------------------------------------------------------------------
def test_read_results_tolerates_a_half_written_line_and_keeps_resumed_rows(tmp_path):
    rows = [
        {"training_iteration": 1, "m": 1.0},
        {"training_iteration": 2, "m": 2.0},
        {"training_iteration": 2, "m": 2.5},
    ]  # iteration 2 again after a resume
    (tmp_path / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"training_iter')
    assert [(r["training_iteration"], r["m"]) for r in read_results(tmp_path)] == [(1, 1.0), (2, 2.5)]
    assert read_results(tmp_path / "missing") == []


def test_rank_trials_follows_mode_and_puts_trials_without_value_last():
    def trial(trial_id, value, status="finished", epochs=3):
        return TrialSummary(trial_id, Path(trial_id), status, "", best_value=value, epochs=epochs)

    trials = [trial("a", 1.0), trial("b", None, "failed", 0), trial("c", 3.0), trial("d", 3.0, epochs=1)]
    assert [t.trial_id for t in rank_trials(list(trials), "max")] == ["c", "d", "a", "b"]
    ranked = rank_trials(list(trials), "min")
    assert [t.trial_id for t in ranked] == ["a", "c", "d", "b"] and [t.rank for t in ranked] == [1, 2, 3, 4]


def test_errors_are_one_line_with_exit_2(tmp_path):
    _one_error_line(_run("analysis/rank.py", tmp_path), "rank.py")
    _one_error_line(_run("analysis/rank.py", tmp_path / "missing"), "rank.py")
    _one_error_line(_run("analysis/report.py", tmp_path, "--out", tmp_path / "r"), "report.py")
    _one_error_line(_run("analysis/export_best.py", tmp_path, "--out", tmp_path / "x"), "export_best.py")
    for script in ("analysis/rank.py", "analysis/report.py", "analysis/export_best.py"):
        assert _run(script, "--help").returncode == 0


# ---- rank ----------------------------------------------------------------------------------------
@e2e
def test_rank_orders_by_metric_and_mode(yolo_experiment, tmp_path):
    settings = json.loads((yolo_experiment / "segtune.json").read_text())
    proc = _run("analysis/rank.py", yolo_experiment, "--out", tmp_path / "a")
    assert proc.returncode == 0, proc.stderr
    rows = _csv(tmp_path / "a" / "ranking.csv")
    values = [float(r["score"]) for r in rows if r["score"]]
    assert values == sorted(values, reverse=settings["objective"]["mode"] == "max") and len(values) == len(rows)
    assert [int(r["rank"]) for r in rows] == list(range(1, len(rows) + 1))
    # the other direction: each trial's score is its best window the other way round, ranked so
    other = "max" if settings["objective"]["mode"] == "min" else "min"
    assert _run("analysis/rank.py", yolo_experiment, "--out", tmp_path / "b", "--mode", other).returncode == 0
    flipped = {r["trial"]: float(r["score"]) for r in _csv(tmp_path / "b" / "ranking.csv")}
    assert list(flipped.values()) == sorted(flipped.values(), reverse=other == "max")
    for trial in load_experiment(yolo_experiment).trials:
        history = [row[settings["objective"]["metric"]] for row in trial.history]
        assert flipped[trial.trial_id] == pytest.approx(best_window(history, other)[1])
        assert trial.best_value == pytest.approx(trial.history[-1][SCORE_KEY])  # as the trial reported it
    # another metric, its direction guessed from the name; the Markdown table is written too. The
    # search's APs are all 0 this early: a copy gets distinct ones, so that a wrong order shows.
    copy = tmp_path / "distinct-ap"
    shutil.copytree(yolo_experiment, copy, ignore=shutil.ignore_patterns("*.pt"))
    trials = sorted(p for p in copy.iterdir() if p.is_dir() and p.name.startswith("trial_"))
    bases = {t.name.removeprefix("trial_"): 10.0 * ((len(trials) - i) % len(trials)) for i, t in enumerate(trials)}
    for trial in trials:
        history = read_results(trial)
        for row in history:  # rising per epoch; trials interleaved against their names' order
            row["segm/AP"] = bases[trial.name.removeprefix("trial_")] + row["training_iteration"]
        (trial / "result.json").write_text("".join(json.dumps(r) + "\n" for r in history))
    assert len(set(bases.values())) == len(trials) >= 3
    assert _run("analysis/rank.py", copy, "--metric", "segm/AP", "--out", tmp_path / "c").returncode == 0
    ranked = [(r["trial"], float(r["score"])) for r in _csv(tmp_path / "c" / "ranking.csv")]
    epochs = {t.trial_id: t.epochs for t in load_experiment(copy).trials}
    expected = {t: best_window([bases[t] + e for e in range(1, epochs[t] + 1)], "max")[1] for t in bases}
    want = sorted(expected.items(), key=lambda x: -x[1])
    assert [t for t, _ in ranked] == [t for t, _ in want]
    assert [v for _, v in ranked] == pytest.approx([v for _, v in want])
    markdown = (tmp_path / "c" / "ranking.md").read_text()
    assert markdown.count("\n| ") == len(rows) + 1 and "segm/AP" in markdown
    _one_error_line(
        _run("analysis/rank.py", yolo_experiment, "--metric", "segm/nope", "--out", tmp_path / "d"), "rank.py"
    )


@e2e
def test_statuses_of_the_real_search(yolo_experiment, tmp_path):
    exp = load_experiment(yolo_experiment)
    max_epochs = exp.settings.budget.max_epochs
    proc = _run("analysis/rank.py", yolo_experiment, "--out", tmp_path)
    for trial in exp.trials:
        assert len(trial.history) == trial.epochs >= 1
        if trial.epochs == max_epochs:
            assert trial.status == "finished", trial.detail
        else:  # ASHA's cut: a rung of grace period 1 and reduction factor 2
            assert trial.status == "stopped" and trial.short_status == f"stopped by ASHA at epoch {trial.epochs}"
            assert f"stopped by ASHA at epoch {trial.epochs}" in proc.stdout
            assert trial.detail == f"stopped early by ASHA at epoch {trial.epochs} of {max_epochs}"
            assert trial.end_reason == "asha"
        assert trial.checkpoint is not None and trial.checkpoint.parent == trial.path
        assert trial.best_epoch is not None and set(trial.best_metrics) == set(trial.last_metrics)
    assert len(exp.searched) >= 2 and "seed" in exp.fixed and exp.reader == "ray"


@e2e
def test_rank_on_a_moved_copy_and_on_its_parent(yolo_experiment, moved_experiment, tmp_path):
    original, moved = load_experiment(yolo_experiment), load_experiment(moved_experiment)
    assert moved.reader == "ray"
    assert [(t.trial_id, t.best_value, t.status) for t in moved.trials] == [
        (t.trial_id, t.best_value, t.status) for t in original.trials
    ]
    assert all(t.checkpoint is not None and moved_experiment in t.checkpoint.parents for t in moved.trials)
    before = _snapshot(moved_experiment)
    proc = _run("analysis/rank.py", moved_experiment)  # default --out: EXP_DIR/analysis/
    assert proc.returncode == 0, proc.stderr
    assert (moved_experiment / "analysis" / "ranking.csv").is_file()
    after = {k: v for k, v in _snapshot(moved_experiment).items() if not k.startswith("analysis")}
    assert after == before  # nothing else in the experiment was touched
    parent = _run("analysis/rank.py", moved_experiment.parent, "--framework", "yolo", "--out", tmp_path)
    assert parent.returncode == 0 and len(_csv(tmp_path / "ranking.csv")) == len(moved.trials), parent.stderr
    _one_error_line(_run("analysis/rank.py", moved_experiment.parent, "--framework", "maskrcnn"), "rank.py")


@e2e
def test_failed_diverged_running_and_stopped_trials(modified_experiment, tmp_path):
    path, roles = modified_experiment
    exp = load_experiment(path)
    by_id = {t.trial_id: t for t in exp.trials}
    failed, diverged = by_id[roles["failed"]], by_id[roles["diverged"]]
    running, stopped = by_id[roles["running"]], by_id[roles["stopped"]]
    assert failed.status == "failed" and failed.reason == "RuntimeError: CUDA out of memory (test)"
    assert diverged.status == "diverged" and "loss is not finite" in diverged.reason and diverged.epochs == 1
    assert running.status == "running" and running.epochs == 1  # the half-written line is skipped
    assert stopped.status == "stopped" and stopped.short_status == "stopped by time budget at epoch 1"
    assert stopped.detail == f"stopped by the time budget at epoch 1 of {exp.settings.budget.max_epochs}"
    proc = _run("analysis/rank.py", path, "--out", tmp_path / "rank")
    assert proc.returncode == 0, proc.stderr
    assert "CUDA out of memory" in proc.stdout and "stopped by time budget at epoch 1" in proc.stdout
    assert _run("analysis/report.py", path, "--out", tmp_path / "report").returncode == 0
    assert "diverged" in (tmp_path / "report" / "report.html").read_text()


# ---- report --------------------------------------------------------------------------------------
@e2e
def test_report_is_one_self_contained_page(yolo_experiment, tmp_path):
    from segtune.analysis.report_plots import plot_curves
    from segtune.analysis.study import importance, scored_study, study_from_experiment

    proc = _run("analysis/report.py", yolo_experiment, "--out", tmp_path)
    assert proc.returncode == 0, proc.stderr
    page = (tmp_path / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') >= 5  # the print version of every plot
    # plotly.js inlined once, then one small script per figure; nothing is fetched from anywhere
    assert page.count("* plotly.js v") == 1 and page.count("<script>") == page.count("Plotly.newPlot(") + 1 >= 6
    assert "<link" not in page and "<script src" not in page and 'src="http' not in page
    own = page.replace(page.split("<script>", 1)[1].split("</script>", 1)[0], "")  # the page without plotly.js
    assert "url(" not in own and "http" not in own.replace("http://www.w3.org", "")
    for name in ("curves.png", "progress.png", "parallel.png", "slice.png", "edf.png"):
        assert (tmp_path / name).stat().st_size > 5000, name
    exp = load_experiment(yolo_experiment)
    figure = plot_curves(exp)
    curves = [line for line in figure.axes[0].lines if line.get_label().startswith("#")]
    assert len(curves) == len(exp.trials)  # one learning curve per trial
    values, explanation = importance(scored_study(study_from_experiment(exp)), exp.metric)
    assert ("PED-ANOVA" in explanation or "fANOVA" in explanation) if values else explanation
    assert html.escape(explanation) in page


# ---- export --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def exported(moved_experiment, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("export") / "best"
    proc = _run("analysis/export_best.py", moved_experiment, "--out", out)
    assert proc.returncode == 0, proc.stderr
    return out


@e2e
def test_export_writes_config_weights_onnx_and_model_card(exported, moved_experiment):
    import onnx
    import yaml

    best = load_experiment(moved_experiment).trials[0]
    config = yaml.safe_load((exported / "config.yaml").read_text())
    assert config["framework"] == "yolo" and config["model"] and "weights" in config
    assert config["params"] == {k: v for k, v in best.params.items()}  # searched and fixed
    native = yaml.safe_load((exported / "native_config.yaml").read_text())
    assert native["lr0"] == best.params["lr0"] and native["data"].endswith(".yaml")
    assert (exported / "weights" / "last.pt").stat().st_size > 1e6
    onnx.checker.check_model(onnx.load(str(exported / "best.onnx")))
    card = (exported / "MODEL_CARD.md").read_text()
    settings = json.loads((moved_experiment / "segtune.json").read_text())
    for text in (
        best.trial_id,
        settings["data"]["content_hash"],
        "segm/AP75",
        "bbox/APm",
        "ultralytics:",
        "ray:",
        "optuna:",
        "torch:",
        "segtune tune --framework yolo --config",
    ):
        assert text in card, text
    # the starting weights (docs/PRETRAINED.md): the retrain command starts from them too
    (framework,) = settings["frameworks"]
    start = f"`{framework['weights']}`" if framework["weights"] else "scratch"
    assert f"model `{framework['models'][0]}`, started from {start}." in card
    assert f"--weights {framework['weights'] or 'none'}" in card


@e2e
def test_exported_weights_predict_and_config_retrains(exported, tiny_demo_data, tmp_path):
    from ultralytics import YOLO

    image = sorted((tiny_demo_data / "images" / "val").iterdir())[0]
    for weights in (exported / "best.pt", exported / "weights" / "last.pt"):
        results = YOLO(str(weights), task="segment").predict(str(image), imgsz=96, device="cpu", verbose=False)
        assert len(results) == 1 and results[0].orig_shape == (96, 96)
    proc = subprocess.run(
        [
            sys.executable,
            "runners/tune.py",
            "--framework",
            "yolo",
            "--config",
            str(exported / "config.yaml"),
            "--max-epochs",
            "1",
            "--data",
            str(tiny_demo_data),
            "--storage",
            str(tmp_path),
            "--name",
            "retrain",
            "--cache-dir",
            str(tmp_path / "cache"),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    # a --config run: one trial, nothing searched; the report says so instead of failing
    report = _run("analysis/report.py", tmp_path / "retrain", "--out", tmp_path / "report")
    assert report.returncode == 0, report.stderr
    assert "no searched hyperparameters" in (tmp_path / "report" / "report.html").read_text()


@e2e
def test_export_refuses_a_non_empty_out_and_exports_another_trial(moved_experiment, exported, tmp_path):
    before = _snapshot(exported)
    _one_error_line(_run("analysis/export_best.py", moved_experiment, "--out", exported), "export_best.py")
    assert _snapshot(exported) == before
    other = load_experiment(moved_experiment).trials[-1]
    proc = _run(
        "analysis/export_best.py", moved_experiment, "--out", tmp_path / "x", "--trial", other.trial_id, "--no-onnx"
    )
    assert proc.returncode == 0, proc.stderr
    assert other.trial_id in (tmp_path / "x" / "MODEL_CARD.md").read_text()
    assert not (tmp_path / "x" / "best.onnx").exists() and (tmp_path / "x" / "best.pt").is_file()
    _one_error_line(
        _run("analysis/export_best.py", moved_experiment, "--out", tmp_path / "y", "--trial", "nope"), "export_best.py"
    )


# ---- TensorBoard ---------------------------------------------------------------------------------
@e2e
def test_tensorboard_has_scalars_and_hparams_for_every_trial(yolo_experiment):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    exp = load_experiment(yolo_experiment)
    for trial in exp.trials:
        (events,) = trial.path.glob("events.out.tfevents.*")
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0, "tensors": 0})
        acc.Reload()
        assert [e.step for e in acc.Scalars(f"ray/tune/{exp.metric}")] == list(range(1, trial.epochs + 1))
        content = acc.PluginTagToContent("hparams")  # written by Ray when the trial ends, ASHA's stop included
        start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
        assert set(start.session_start_info.hparams) == set(exp.searched), trial.status
        assert "_hparams_/session_end_info" in content
