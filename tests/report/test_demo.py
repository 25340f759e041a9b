"""The demo's pipeline end to end: a reduced size in CI, the full `lumbar demo` in `make test-all`."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from launch.demo_runner import DemoConfig, run_demo
from tests.pipelines.test_local_runs import check_procedure1

LUMBAR = str(Path(sys.executable).with_name("lumbar"))
#: The smallest training settings that still run every stage of the demo.
SMALLEST = {"pretrain_backbones": "vgg16", "image_size": 32, "epochs": 1, "pretrain_epochs": 1, "pretrain_steps": 2}


def test_reduced_demo_produces_the_report(tmp_path, monkeypatch, capfd):
    """One kfp.local run of `paper` serves the report, the terminal and procedure 1's eight configurations."""
    monkeypatch.setenv("LUMBAR_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    lines = []
    config = DemoConfig(out=tmp_path / "demo", patients=8, backbones="vgg16,mobilenetv2", **SMALLEST)
    result = run_demo(config, say=lines.append)
    terminal = capfd.readouterr()
    assert result.weights == "none"  # no ImageNet files offline: the report must say so
    page = result.report.read_text()
    for section in ("procedure1", "procedure2", "procedure3"):
        assert f"<h2 id='{section}'>" in page
    assert "not transfer learning" in page
    markdown = (result.report.parent / "report.md").read_text()
    assert len(re.findall(r"^- \[procedure1: ", markdown, flags=re.M)) == 8
    assert len(re.findall(r"^- \[procedure[23]: ", markdown, flags=re.M)) == 4
    # every stage was timed, and the pipeline's tasks too
    assert any("pipeline `paper`" in line for line in lines) and any(" train" in line for line in lines)
    assert set(result.timings) and all(t >= 0 for t in result.timings.values())
    # the terminal is quiet: a header, one line per task, the timing table, where things are; the rest is in the log
    shown = terminal.out.splitlines() + terminal.err.splitlines()
    assert len(shown) <= 100, "\n".join(shown)
    log = tmp_path / "demo" / "logs" / "demo.log"
    assert result.log == log and f"logs:         {log}" in shown
    text = re.sub(r"\x1b\[[0-9;]*m", "", log.read_text())
    assert "[KFP Executor" in text and "Wrote executor output file" in text  # the tasks' own output
    executed = re.findall(r"Executing task '([^']+)'", text)
    assert len(executed) == len(result.tasks) >= 30 and all(r.ok for r in result.tasks)
    assert f"pipeline `paper`: {len(executed)} tasks" in terminal.out  # the progress bar's total was right
    task_lines = [line for line in shown if re.fullmatch(r"  \S+ .*\b(SUCCESS|FAILURE) +\d+\.\d s", line)]
    # two loop iterations run at once, so tasks finish in another order than they start
    assert sorted(line.split()[0] for line in task_lines) == sorted(executed)
    assert re.search(r"  train +vgg16 finetune roi +SUCCESS", terminal.out)  # a training task says what it trains
    assert "[KFP Executor" not in terminal.out and "Executing task" not in terminal.out
    trains = sum(re.sub(r"-\d+$", "", name) == "train" for name in executed)
    assert any(line.split()[:2] == ["train", str(trains)] for line in shown)  # its row in the timing table
    # procedure 1 inside `paper`: 2 backbones x {frozen, finetune} x {full, ROI}, each trained, evaluated,
    # in the compare table with its numbers, tracked in MLflow under the run's Kubeflow id; Grad-CAM of the best
    from lumbar.tracking import tracking_uri

    check_procedure1(result.run_folder, tracking_uri(), ("vgg16", "mobilenetv2"), ("frozen", "finetune"))


@pytest.mark.slow
def test_full_demo(tmp_path):
    """What `make demo` runs: 12 patients, the four backbones, target under 20 minutes on 2 cores."""
    proc = subprocess.run(
        [LUMBAR, "demo", "--out", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        timeout=3600,
        env={**__import__("os").environ, "LUMBAR_DATA_DIR": str(tmp_path / "data")},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "demo" / "report" / "report.html").is_file()
    assert "MLflow UI:" in proc.stdout
    assert len(proc.stdout.splitlines()) + len(proc.stderr.splitlines()) <= 100, proc.stdout + proc.stderr


@pytest.mark.slow
@pytest.mark.integration
def test_demo_against_the_local_servers(s3_env, tmp_path, monkeypatch):
    """`make demo-services`: the export and Dataset C land in the object store, the runs in the MLflow server."""
    from mlflow import MlflowClient

    from lumbar.storage import open_store

    monkeypatch.setenv("LUMBAR_DATA_DIR", str(tmp_path / "data"))
    config = DemoConfig(out=tmp_path / "demo", patients=6, backbones="mobilenetv2", services=True, **SMALLEST)
    result = run_demo(config, say=lambda line: None)
    assert result.report.is_file()
    assert open_store("s3://lumbar/datasets/dataset-c").exists("latest")
    assert any(key.endswith("labels.csv") for key in open_store("s3://lumbar/exports/demo").list())
    client = MlflowClient(s3_env["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("lumbar-procedure1")
    assert len(client.search_runs([experiment.experiment_id])) >= 4
