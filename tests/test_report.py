"""The HTML report: the Optuna study it plots, and the page itself in a real headless browser.

The browser is Chromium from Debian's packages (`.ci/run` installs it); without it the browser tests are
skipped with the reason shown. The page is checked at 1400 px: every interactive plot drawn by plotly.js
from the page itself (offline), nothing wider than the window outside a scrolling table box, and a
screenshot that is not blank. A synthetic experiment with every trial status needs no search; the real
one is the session's YOLO search, widened with long Detectron2-style parameter names.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from segtune.analysis.ranking import rank_trials
from segtune.analysis.report import PNG_NAMES, build_report
from segtune.analysis.study import importance, scored_study, study_from_experiment
from segtune.analysis.trials import Experiment, TrialSummary, load_experiment
from segtune.core.record import PreparedDataset, RunSettings
from segtune.core.sections import Budget, FrameworkEntry, Objective, Resources

CHROMIUM = shutil.which("chromium")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (.ci/run installs it: apt-get install -y chromium)"
)
WIDTH = 1400
# Run inside the page after it loaded: how wide the document is, what plotly drew, what sticks out.
PROBE = """<script>
window.__errors = [];
window.addEventListener("error", e => window.__errors.push(String(e.message)));
window.addEventListener("load", () => setTimeout(() => {
  const root = document.documentElement;
  const plots = [...document.querySelectorAll(".screen-only .plotly-graph-div")];
  const outside = [...document.body.querySelectorAll("*")].filter(e => !e.closest("svg") && !e.closest(".scroll")
      && e.getBoundingClientRect().right > root.clientWidth + 0.5).map(e => e.tagName + "." + e.className);
  const probe = {scrollWidth: root.scrollWidth, clientWidth: root.clientWidth, plots: plots.length,
    rendered: plots.filter(p => p.querySelector(".main-svg")).length, outside: outside.slice(0, 10),
    scrolling: [...document.querySelectorAll(".scroll")].filter(s => s.scrollWidth > s.clientWidth).length,
    errors: window.__errors};
  const pre = document.createElement("pre");
  pre.id = "layout-probe";
  pre.textContent = JSON.stringify(probe);
  document.body.appendChild(pre);
}, 200));
</script>"""
# Long names as in a Detectron2 search: the ranking page must still fit.
WIDE_PARAMS = {
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE": [64, 128, 256, 512],
    "MODEL.ANCHOR_GENERATOR.SIZES": [[[32], [64], [128]], [[16], [32], [64]]],
    "SOLVER.CLIP_GRADIENTS.CLIP_VALUE": [0.5, 1.0, 5.0],
    "INPUT.MIN_SIZE_TRAIN": [480, 512, 640, 800],
    "SOLVER.WARMUP_ITERS": [0, 100, 1000],
    "MODEL.RPN.POST_NMS_TOPK_TRAIN": [500, 1000, 2000],
    "SOLVER.WEIGHT_DECAY": [1e-5, 1e-4, 5e-4],
    "MODEL.BACKBONE.FREEZE_AT": [0, 1, 2],
    "SOLVER.OPTIMIZER": ["SGD", "AdamW"],
}


# ---- a synthetic experiment with every status --------------------------------------------------------
def _settings(metric: str = "segm/AP", mode: str = "max") -> RunSettings:
    dataset = PreparedDataset(
        "synthetic",
        "0" * 64,
        Path("train.json"),
        Path("train"),
        Path("val.json"),
        Path("val"),
        (1,),
        ("shape",),
        num_train_images=32,
        num_val_images=8,
    )
    return RunSettings(
        dataset,
        (FrameworkEntry("maskrcnn", "torchvision", ("maskrcnn_resnet18_fpn",)),),
        {},
        Objective(metric, mode),
        Budget(4, num_samples=None),
        resources=Resources(cpus_per_trial=2.0),
    )


def _trial(trial_id: str, status: str, values: list[float], i: int) -> TrialSummary:
    history = [
        {"training_iteration": e, "epoch": e, "timestamp": 1000 + 10 * i + e, "segm/AP": v, "bbox/AP": v + 1.0}
        for e, v in enumerate(values, 1)
    ]
    params = {k: choices[i % len(choices)] for k, choices in WIDE_PARAMS.items()}
    params.update({"SOLVER.BASE_LR": 10 ** -(1 + i % 4), "SEED": 0})
    best = max(history, key=lambda r: r["segm/AP"]) if history else None
    return TrialSummary(
        trial_id,
        Path(trial_id),
        status,
        status,
        params=params,
        history=history,
        epochs=len(history),
        best_epoch=best and best["epoch"],
        best_value=best and best["segm/AP"],
        best_metrics={"segm/AP": best["segm/AP"], "bbox/AP": best["bbox/AP"]} if best else {},
        wall_time_s=12.0 * len(history) or None,
    )


def synthetic_experiment(path: Path) -> Experiment:
    trials = [
        _trial(*spec, i)
        for i, spec in enumerate(
            [
                ("aaaa0001", "finished", [1.0, 5.0, 9.0, 12.0]),
                ("aaaa0002", "stopped", [3.0]),
                ("aaaa0003", "stopped", [2.0, 6.0]),
                ("aaaa0004", "diverged", [4.0]),
                ("aaaa0005", "failed", []),
                ("aaaa0006", "running", [1.0, 2.0]),
                ("aaaa0007", "pending", []),
                ("aaaa0008", "finished", [2.0, 4.0, 7.0, 8.5]),
                ("aaaa0009", "stopped", [0.5, 0.4]),
            ]
        )
    ]
    rank_trials(trials, "max")
    searched = sorted([*WIDE_PARAMS, "SOLVER.BASE_LR"])
    return Experiment(path, _settings(), trials, "segm/AP", "max", searched, {"SEED": 0}, {}, "files")


def test_study_from_experiment_keeps_states_values_and_epochs(tmp_path):
    exp = synthetic_experiment(tmp_path / "synthetic")
    study = study_from_experiment(exp)
    by_id = {t.user_attrs["trial_id"]: t for t in study.trials}
    assert "aaaa0007" not in by_id  # pending: nothing to plot
    assert [by_id[f"aaaa000{i}"].state for i in (1, 2, 4, 5, 6)] == [
        TrialState.COMPLETE,
        TrialState.PRUNED,
        TrialState.FAIL,
        TrialState.FAIL,
        TrialState.RUNNING,
    ]
    assert by_id["aaaa0001"].value == 12.0 and by_id["aaaa0003"].value == 6.0  # each trial's best epoch
    assert by_id["aaaa0004"].value is None and by_id["aaaa0004"].intermediate_values == {1: 4.0}
    assert by_id["aaaa0006"].intermediate_values == {1: 1.0, 2: 2.0}
    assert by_id["aaaa0001"].user_attrs["rank"] == 1 and study.direction == optuna.study.StudyDirection.MAXIMIZE
    assert by_id["aaaa0002"].params["SOLVER.OPTIMIZER"] in ("SGD", "AdamW")
    assert by_id["aaaa0001"].params["MODEL.ANCHOR_GENERATOR.SIZES"] == "[[32], [64], [128]]"  # lists as text
    assert by_id["aaaa0002"].distributions["SOLVER.BASE_LR"].log  # fitted: 1e-4..1e-1 spans orders
    scored = scored_study(study)
    assert sorted(t.value for t in scored.trials) == [0.5, 3.0, 6.0, 8.5, 12.0]  # stopped: best, not last
    assert all(t.state == TrialState.COMPLETE for t in scored.trials)
    values, explanation = importance(scored, exp.metric)
    assert values and set(values) <= set(exp.searched) and "ASHA-stopped" in explanation


def test_report_takes_a_study_that_optuna_stored(tmp_path):
    """A study Optuna recorded itself (pruned trials, no segtune labels) can replace the rebuilt one."""
    exp = synthetic_experiment(tmp_path / "synthetic")
    study = optuna.create_study(
        direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=3.0, n_warmup_steps=1)
    )

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0.0, 1.0)
        kind = trial.suggest_categorical("kind", ["a", "b"])
        for epoch in range(1, 4):
            value = 10 * x + epoch + (kind == "a")
            trial.report(value, epoch)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return value

    study.optimize(objective, n_trials=8)
    page = build_report(exp, tmp_path / "out", study=study).read_text()
    compact = page.replace(" ", "")
    assert '"name":"Trial0"' in compact  # Optuna's own labels in the learning curves
    assert '"title":{"text":"kind"}' in compact  # the study's parameters, not the experiment's (slice axis)
    assert page.count("Plotly.newPlot(") >= 5 and page.count("<script") == page.count("Plotly.newPlot(") + 1


# ---- in Chromium ------------------------------------------------------------------------------------
def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    # virtual time lets the page's scripts (plotly) finish before the DOM or the pixels are taken
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            f"--user-data-dir={tmp_path / 'profile'}",
            f"--window-size={WIDTH},3000",
            "--virtual-time-budget=15000",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )


def check_in_chromium(report: Path, tmp_path: Path) -> dict:
    """Open the report at WIDTH px; return the layout probe's findings after asserting they are sound."""
    page = report.read_text()
    probe_copy = report.with_name("probe.html")  # beside the page: the same file:// context
    probe_copy.write_text(page.replace("<head>", "<head>" + PROBE, 1))
    dom = _chromium(tmp_path, "--dump-dom", probe_copy.as_uri())
    assert 'id="layout-probe"' in dom.stdout, dom.stderr[-2000:]
    found = json.loads(dom.stdout.split('<pre id="layout-probe">', 1)[1].split("</pre>", 1)[0])
    assert found["errors"] == [], found
    assert found["plots"] >= 4 and found["rendered"] == found["plots"], found  # plotly drew every figure
    assert 'class="main-svg"' in dom.stdout
    assert found["scrollWidth"] <= WIDTH and found["scrollWidth"] <= found["clientWidth"], found  # nothing cut off
    assert found["outside"] == [], found

    from PIL import Image, ImageStat

    shot = tmp_path / "screenshot.png"
    _chromium(tmp_path, f"--screenshot={shot}", report.as_uri())
    image = Image.open(shot).convert("RGB")
    found["std"] = ImageStat.Stat(image.convert("L")).stddev[0]
    found["colours"] = len(image.getcolors(maxcolors=1 << 22) or [])
    saturation = image.convert("HSV").split()[1].histogram()  # plot lines, bars and badges are coloured
    found["colourful"] = sum(saturation[80:]) / (image.width * image.height)
    assert image.size == (WIDTH, 3000)
    # a blank page has std 0 and one colour; text alone ~1 and < 100 colours; this report ~30 and thousands
    assert found["std"] > 15 and found["colours"] > 500 and found["colourful"] > 0.002, found
    print(f"{report} in Chromium at {WIDTH} px: {found}")  # shown with pytest -s or -rA
    return found


@needs_chromium
def test_synthetic_report_in_chromium(tmp_path):
    exp = synthetic_experiment(tmp_path / "synthetic")
    report = build_report(exp, tmp_path / "out")
    found = check_in_chromium(report, tmp_path)
    assert found["plots"] == 8 and found["scrolling"] >= 1, found  # curves, importance, parallel, 4 slices, EDF
    page = report.read_text()
    for status in ("stopped early", "diverged", "failed", "running", "pending"):
        assert status in page, status
    pdf = tmp_path / "print.pdf"  # print shows the static PNGs instead of the interactive plots
    _chromium(tmp_path, "--no-pdf-header-footer", f"--print-to-pdf={pdf}", report.as_uri())
    written = [name for name in PNG_NAMES if (tmp_path / "out" / name).is_file()]
    assert "pareto.png" not in written  # the synthetic trials recorded no latency: no front to draw
    assert pdf.read_bytes().count(b"/Subtype /Image") == len(written) == len(PNG_NAMES) - 1


@pytest.mark.e2e
@needs_chromium
def test_real_report_in_chromium_at_1400_px(yolo_experiment, tmp_path):
    exp = load_experiment(yolo_experiment)
    for i, trial in enumerate(sorted(exp.trials, key=lambda t: t.trial_id)):
        trial.params.update({k: choices[i % len(choices)] for k, choices in WIDE_PARAMS.items()})
    exp.searched = sorted([*exp.searched, *WIDE_PARAMS])
    report = build_report(exp, tmp_path / "out")
    found = check_in_chromium(report, tmp_path)
    assert found["plots"] >= 5 and found["scrolling"] >= 1, found  # the wide parameter table scrolls in its box
