"""The results report from real tracked runs, against a real MLflow server; rendered in a real browser."""

import html
import json
import re
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from kfp.dsl import Dataset, Model

from components.train import train
from lumbar.metrics import improvement_rate, majority_f1
from lumbar.report import CHOICES, ReportConfig, RunRecord, _fill_views, build_report, choices
from lumbar.steps.evaluate import evaluate_step

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
TINY = {"weights": "none", "epochs": 1, "image_size": 32}


@pytest.fixture(scope="module")
def tracked_runs(built_dataset, local_services, tmp_path_factory):
    """Three configurations of procedure 1 and one of procedure 2, trained and evaluated, on the MLflow server.

    VGG16 because the paper's Tables 6-14 all have it: full frozen (Table 6), full and ROI fine-tuned
    (Tables 7, 9 and 10), and ROI fine-tuned from "Dataset A" (Tables 11 and 12; here random weights).
    """
    base = tmp_path_factory.mktemp("report-runs")
    env = local_services.client_env()
    patch = pytest.MonkeyPatch()
    # the run id reaches a training step through the environment, as a pod label does on a cluster
    for key, value in {**env, "LUMBAR_DATA_DIR": str(base / "data"), "LUMBAR_KFP_RUN_ID": "kfp-run-1"}.items():
        patch.setenv(key, value)
    try:
        for procedure, configs in {
            "procedure1": [("vgg16", "frozen", False), ("vgg16", "finetune", False), ("vgg16", "finetune", True)],
            "procedure2": [("vgg16", "finetune", True)],
        }.items():
            for backbone, mode, roi in configs:
                out = base / f"{procedure}-{backbone}-{mode}-{roi}"
                model = Model(name="model", uri=str(out))
                config = {"backbone": backbone, "mode": mode, "roi": roi, "procedure": procedure, **TINY}
                train.python_func(
                    dataset=Dataset(name="dataset", uri=str(built_dataset)),
                    model=model,
                    **config,
                )
                # the default view (abnormal): the tables use normal
                evaluate_step(model=out, dataset=built_dataset, out=out / "eval", split="test", positive="abnormal")
    finally:
        patch.undo()
    return env["MLFLOW_TRACKING_URI"], base


@pytest.fixture(scope="module")
def report(tracked_runs, built_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    uri, _ = tracked_runs
    config = ReportConfig(
        out=out,
        tracking_uri=uri,
        mlflow_ui=uri,
        data_origin="synthetic",
        dataset=str(built_dataset),
        gradcam_images=2,
    )
    return build_report(config), config


def test_tables_are_the_papers_in_its_positive_class_with_the_mlflow_numbers(report, tracked_runs):
    from mlflow import MlflowClient

    result, _ = report
    client = MlflowClient(tracked_runs[0])

    def metric(run_id, key):
        return client.get_run(run_id).data.metrics[f"test_{key}"]

    p1 = {t.key: t for t in result.tables["procedure1"]}
    assert set(p1) == {"table6", "table7", "table9", "table10"}
    checked = 0
    for key in ("table6", "table7", "table9"):
        table = p1[key]
        assert "positive class normal, as in the paper" in table.title and "ours on synthetic data" in table.title
        (row,) = table.rows
        assert row[0].text == "vgg16"
        run_id = row[2].run_id
        n, normal = int(metric(run_id, "support")), int(metric(run_id, "normal_positives"))
        assert (row[1].text, row[1].paper) == (f"{n} / {normal}", "182 / 109" if key != "table9" else "91 / 55")
        for cell, name in zip(row[2:6], ("accuracy", "precision", "recall", "f1"), strict=True):
            assert cell.text.split(" [")[0] == f"{100 * metric(run_id, f'normal_{name}'):.2f}"  # the paper's view
            assert cell.paper  # the paper's value beside every cell
            checked += 1
        assert row[2].warning.startswith("split too small to compare")  # a handful of test images
        assert row[6].text == f"{100 * majority_f1(n, normal):.2f}"
    assert checked == 12
    assert [c.paper for c in p1["table6"].rows[0][2:6]] == ["78.57", "88.89", "73.39", "80.40"]  # Table 6, VGG16
    # Table 10: Equation 8 on the F1 of the two fine-tuned runs, the paper's pair and rates beside
    (row,) = p1["table10"].rows
    full, roi = metric(row[1].run_id, "normal_f1"), metric(row[2].run_id, "normal_f1")
    assert row[1].run_id == p1["table7"].rows[0][2].run_id and row[2].run_id == p1["table9"].rows[0][2].run_id
    assert row[3].text == ("–" if full == 0 else f"{improvement_rate(roi, full):+.2f} %")
    assert (row[1].paper, row[2].paper, row[3].paper, row[4].text) == ("85.05", "87.04", "+2 %", "2 % / 2.34 %")
    # procedure 2: Table 11 beside the paper's cells; Table 12 against procedure 1's fine-tuned FULL-image run
    p2 = {t.key: t for t in result.tables["procedure2"]}
    assert set(p2) == {"table11", "table12", "table12-same-mode-ours"}
    (row,) = p2["table11"].rows
    assert [c.text for c in row[:3]] == ["vgg16", "finetune", "ROI"]
    assert [c.paper for c in row[4:8]] == ["87.91", "89.29", "90.91", "90.09"]
    (row,) = p2["table12"].rows
    assert row[2].run_id == p1["table7"].rows[0][2].run_id and row[2].paper == "87.00"
    assert "87.00 is Table 7's VGG19" in row[6].text  # the paper's swapped baseline, said where it touches
    (row,) = p2["table12-same-mode-ours"].rows
    assert row[3].run_id == p1["table9"].rows[0][2].run_id and not row[3].paper


def test_conditions_and_declared_choices_are_stated_first(report, tracked_runs):
    from mlflow import MlflowClient

    result, _ = report
    page = result.html.read_text()
    first_screen = html.unescape(page[: page.index("<h2 id='procedure1'>")])
    assert "synthetic" in first_screen
    assert "ran from random initialisation: they are not transfer learning" in first_screen
    assert "measured on their hospital's data" in first_screen
    assert "Positive class:</b> normal in every table" in first_screen
    version = next(iter(result.runs["procedure1"])).tags["dataset.version"]
    assert version in first_screen and "32 px" in first_screen
    # the declared choices: each run param's value (or "not recorded") beside what the paper says
    assert "The paper's procedure where the project drifted, or a declared choice where the paper is vague" in (
        first_screen
    )
    client = MlflowClient(tracked_runs[0])
    params = [client.get_run(r.row["run_id"]).data.params for group in result.runs.values() for r in group]
    for title, param, paper in (
        ("Fine-tune rule", "unfreeze", "made some layers trainable with two"),
        ("Model selection", "monitor", "the lowest error rate on the validation set"),
        ("Class weights", "class_weights", "none mentioned"),
        ("Head", "head", "dropout 0.2"),
    ):
        values = {p.get(param) or "not recorded" for p in params}
        assert len(values) == 1  # all four runs were trained alike
        cells = f"<tr><td class='name'>{title}</td><td><code>{param}</code></td><td>([^<]*)</td><td>([^<]*)"
        row = re.search(cells, page)
        assert row, title
        assert html.unescape(row.group(1)) == values.pop() and paper in html.unescape(row.group(2))
    # the probe before fine-tuning differs between the frozen run (0 epochs) and the fine-tuned ones
    probes = sorted(p.get("probe_epochs", "not recorded") for p in params)
    row = re.search(r"<td><code>probe_epochs</code></td><td>([^<]*)</td><td>([^<]*)", page)
    assert row and "except in step 3" in html.unescape(row.group(2))
    assert all(f"{v} ({probes.count(v)} runs)" in row.group(1) for v in set(probes)) or row.group(1) == probes[0]
    markdown = result.markdown.read_text()
    assert "## procedure1" in markdown and "### Table 10: improvement from the ROI, Equation 8 on F1" in markdown
    assert "| Fine-tune rule | `unfreeze` |" in markdown


def test_cli_evaluate_prints_the_chosen_view_and_records_both(tracked_runs, built_dataset, tmp_path):
    """``lumbar evaluate --positive normal`` on one of the trained models (no new training)."""
    _, base = tracked_runs
    model = base / "procedure1-vgg16-finetune-True"
    lumbar = str(Path(sys.executable).with_name("lumbar"))
    args = [lumbar, "evaluate", "--model", str(model), "--dataset", str(built_dataset), "--no-track"]
    chosen = [*args, "--positive", "normal", "--out", str(tmp_path)]
    done = subprocess.run(chosen, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    written = json.loads((tmp_path / "metrics.json").read_text())
    metrics = written["metrics"]
    assert written["positive"] == metrics["positive"] == "normal"
    assert metrics["f1"] == metrics["normal_f1"] and metrics["recall"] == metrics["normal_recall"]
    assert "positive class: normal" in done.stdout.replace("\n", " ")
    n = metrics["support"]
    for view in ("abnormal", "normal"):
        positives = metrics[f"{view}_positives"]
        line = (
            f"{view} positive: F1 {metrics[f'{view}_f1']:.4f}, precision {metrics[f'{view}_precision']:.4f}, "
            f"recall {metrics[f'{view}_recall']:.4f} ({positives} of {n} {view}; majority-class F1 "
            f"{majority_f1(n, positives):.4f})"
        )
        assert line in done.stdout
    (tn, fp), (fn, tp) = metrics["confusion"]["matrix"]
    assert f"true normal: {tn} normal, {fp} abnormal; true abnormal: {fn} normal, {tp} abnormal" in done.stdout
    assert [p["class"] for p in written["predictions"]].count("normal") == metrics["normal_positives"]
    bad = subprocess.run([*args, "--positive", "healthy"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == ["error: positive must be one of abnormal, normal, got 'healthy'"]


def test_an_old_run_gets_the_papers_view_from_its_confusion_matrix():
    """Runs evaluated before both views were recorded kept only abnormal metrics, and a 0/1 confusion list."""
    record = RunRecord("procedure1", {"backbone": "vgg16", "f1": 0.5}, "1", {}, {})
    record.evaluation = {"metrics": {"confusion": [[3, 1], [2, 4]]}}  # rows true normal, abnormal
    _fill_views(record)
    assert record.row["normal_positives"] == 4 and record.row["support"] == 10
    assert record.row["normal_recall"] == 0.75 and record.row["normal_precision"] == 0.6
    assert record.row["abnormal_f1"] == pytest.approx(2 * 4 / (2 * 4 + 1 + 2))
    assert [c[0] for c in choices({"procedure1": [record]})] == list(CHOICES)
    assert {values for _, values, _ in choices({"procedure1": [record]})} == {"not recorded"}


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
        url = f"{tracked_runs[0]}/api/2.0/mlflow/runs/get?run_id={run_id}"
        with urllib.request.urlopen(url, timeout=10) as answer:
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


def test_a_pretraining_no_better_than_the_majority_is_said_on_the_first_screen(tmp_path):
    """Runs whose supervised pretraining ended no better than the majority class get a warning in red, which says
    from the pretraining's ROC-AUC whether it had begun to rank its images or learned nothing."""
    from lumbar.report import conditions, render_html

    def record(procedure: str, tags: dict[str, str]) -> RunRecord:
        row = {"backbone": "vgg16", "mode": "finetune", "roi": True, "weights_source": "supervised", "run_id": "r"}
        return RunRecord(procedure, row, "1", {}, tags)

    tags = {"lumbar.pretraining.val_error": "0.3750", "lumbar.pretraining.majority_val_error": "0.3750"}
    config = ReportConfig(out=tmp_path)

    def weights_line(tags: dict[str, str]) -> str:
        return dict(conditions(config, {"procedure2": [record("procedure2", tags)]}))["Weights, procedure2"]

    said = weights_line(tags)
    assert "ended no better than always answering the majority class (validation error 0.375, majority 0.375)" in said
    assert "it learned nothing usable from its labels" in said
    ranked = weights_line({**tags, "lumbar.pretraining.val_auc": "0.84"})
    assert "validation ROC-AUC 0.84): it had begun to rank its images, not yet to classify them" in ranked
    assert "no better than" not in weights_line({**tags, "lumbar.pretraining.val_error": "0.1000"})
    page = render_html(config, {"procedure2": [record("procedure2", tags)]}, {}, {}, {})
    assert "<span class='warning'>Dataset A" in page
