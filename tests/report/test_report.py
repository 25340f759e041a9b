"""The results report from real tracked runs, against a real MLflow server; rendered in a real browser."""

import html
import re
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest

from lumbar.evaluate import improvement_rate
from lumbar.report import ReportConfig, build_report
from lumbar.steps import evaluate_step, train_step

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
TINY = {"weights": "none", "epochs": 1, "image_size": 32}


@pytest.fixture(scope="module")
def tracked_runs(built_dataset, local_services, tmp_path_factory):
    """Four configurations of procedure 1 and two of procedure 2, trained and evaluated, on the MLflow server."""
    base = tmp_path_factory.mktemp("report-runs")
    env = local_services.client_env()
    patch = pytest.MonkeyPatch()
    for key, value in {**env, "LUMBAR_DATA_DIR": str(base / "data")}.items():
        patch.setenv(key, value)
    try:
        for procedure, configs in {
            "procedure1": [("vgg16", "frozen", False), ("vgg16", "frozen", True), ("mobilenetv2", "finetune", False)],
            "procedure2": [("vgg16", "frozen", True)],
        }.items():
            for backbone, mode, roi in configs:
                out = base / f"{procedure}-{backbone}-{mode}-{roi}"
                train_step(built_dataset, out, backbone, mode, roi, procedure=procedure, kfp_run_id="kfp-run-1", **TINY)
                evaluate_step(out, built_dataset, out / "eval")
    finally:
        patch.undo()
    return env["MLFLOW_TRACKING_URI"]


@pytest.fixture(scope="module")
def report(tracked_runs, built_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    config = ReportConfig(
        out=out,
        tracking_uri=tracked_runs,
        mlflow_ui=tracked_runs,
        data_origin="synthetic",
        dataset=str(built_dataset),
        gradcam_images=2,
    )
    return build_report(config), config


def test_tables_have_the_right_rows_and_the_mlflow_numbers(report, tracked_runs):
    from mlflow import MlflowClient

    result, _ = report
    client = MlflowClient(tracked_runs)
    p1 = {t.key: t for t in result.tables["procedure1"]}
    assert set(p1) == {"procedure1-frozen-full", "procedure1-frozen-roi", "procedure1-finetune-full",
                       "procedure1-roi-improvement"}  # fmt: skip
    assert [row[0].text for row in p1["procedure1-frozen-full"].rows] == ["vgg16"]
    checked = 0
    for table in result.tables["procedure1"][:3]:
        for row in table.rows:
            for cell, metric in zip(row[1:], ("accuracy", "precision", "recall", "f1"), strict=True):
                value = client.get_run(cell.run_id).data.metrics[f"test_{metric}"]
                assert cell.text == f"{100 * value:.2f}"
                checked += 1
    assert checked == 12
    # Table 10: the ROI improvement of vgg16 frozen, by Equation 8 from the two runs' accuracies
    (row,) = [r for r in p1["procedure1-roi-improvement"].rows if r[1].text == "frozen"]
    full = client.get_run(row[2].run_id).data.metrics["test_accuracy"]
    roi = client.get_run(row[3].run_id).data.metrics["test_accuracy"]
    expected = "–" if full == 0 else f"{improvement_rate(roi, full):+.2f} %"
    assert row[4].text == expected
    assert row[4].paper == "+2 %"  # the paper's printed rate for VGG16, beside ours
    # procedure 2 against procedure 1's run of the same configuration
    (p2,) = result.tables["procedure2"]
    (row,) = p2.rows
    assert [c.text for c in row[:3]] == ["vgg16", "frozen", "ROI"]
    assert row[7].run_id == p1["procedure1-frozen-roi"].rows[0][1].run_id


def test_conditions_are_stated_first(report):
    result, _ = report
    page = result.html.read_text()
    first_screen = html.unescape(page[: page.index("<h2 id='procedure1'>")])
    assert "synthetic" in first_screen
    assert "ran from random initialisation: they are not transfer learning" in first_screen
    assert "measured on their hospital's data" in first_screen
    version = next(iter(result.runs["procedure1"])).tags["dataset.version"]
    assert version in first_screen and "32 px" in first_screen
    markdown = result.markdown.read_text()
    assert "## procedure1" in markdown and "Improvement from the ROI" in markdown


def test_every_link_resolves_to_its_run(report, tracked_runs):
    result, config = report
    page = result.html.read_text()
    links = set(re.findall(r"href='([^']+)'", page))
    runs = {r.row["run_id"]: r for group in result.runs.values() for r in group}
    assert len(runs) == 4 and len(links) == 4
    for link in links:
        match = re.fullmatch(re.escape(config.mlflow_ui) + r"/#/experiments/(\d+)/runs/([0-9a-f]+)", link)
        assert match, link
        experiment_id, run_id = match.groups()
        with urllib.request.urlopen(f"{tracked_runs}/api/2.0/mlflow/runs/get?run_id={run_id}", timeout=10) as answer:
            body = answer.read().decode()
        assert f'"experiment_id": "{experiment_id}"' in body.replace('":"', '": "')
    with urllib.request.urlopen(config.mlflow_ui, timeout=10) as answer:  # the UI the links open
        assert answer.status == 200


def test_plots_and_gradcam_panels(report):
    result, _ = report
    plots = {p.stem for p in (result.html.parent / "plots").glob("*.png")}
    assert {"f1", "training-curves", "confusion-matrices", "roc-curves"} <= plots
    assert {"gradcam-none"} <= plots  # one panel per weights source (here all runs are from random weights)
    assert result.html.read_text().count("data:image/png;base64,") == len(plots)


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("Debian's chromium is missing: run `make test`, which installs it")
    return path


def test_report_renders_in_a_real_browser(report, tmp_path):
    result, _ = report
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "report.png"
    shot.unlink(missing_ok=True)
    proc = subprocess.run(
        [
            _chromium(), "--headless", "--no-sandbox", "--disable-gpu", f"--user-data-dir={tmp_path / 'profile'}",
            "--enable-logging=stderr", "--v=0", "--window-size=1280,2400", f"--screenshot={shot}",
            result.html.as_uri(),
        ],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert shot.is_file() and shot.stat().st_size > 20_000, proc.stderr[-2000:]
    console = [line for line in proc.stderr.splitlines() if "CONSOLE" in line]
    assert not console, console
