"""The demo's pipeline end to end: a reduced size in CI, the full `lumbar demo` in `make test-all`."""

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from launch.demo_runner import DEMO_SECRET, DemoConfig, _pseudonym_secret, run_demo
from tests.pipelines.test_local_runs import check_procedure1, check_procedure2

REPO = Path(__file__).resolve().parents[2]
LUMBAR = str(Path(sys.executable).with_name("lumbar"))
#: The smallest training settings that still run every stage of the demo.
SMALLEST = {
    "pretrain_backbones": "vgg16",
    "image_size": 32,
    "epochs": 1,
    "supervised_epochs": 1,
    "ssl_epochs": 1,
    "ssl_steps": 2,
}


@dataclass
class Demo:
    """The reduced demo, run from a user's folder (``base``) with ``data/`` in it and nothing set."""

    base: Path
    result: Any
    lines: list[str]
    terminal: str


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Iterator[Demo]:
    """One kfp.local run of `paper`, as `make demo` runs it but smaller; it serves every test of this file.

    Its working directory is a fresh folder and neither LUMBAR_DATA_DIR nor MLFLOW_TRACKING_URI is set,
    so the demo leaves everything where the README says: ``data/demo/...`` and ``data/mlflow.db``.
    """
    base = tmp_path_factory.mktemp("user")
    patch = pytest.MonkeyPatch()
    patch.chdir(base)
    patch.delenv("LUMBAR_DATA_DIR", raising=False)
    patch.delenv("MLFLOW_TRACKING_URI", raising=False)
    lines: list[str] = []
    config = DemoConfig(out=Path("data/demo"), patients=8, backbones="vgg16", **SMALLEST)
    screen = base / "terminal.txt"
    with screen.open("w") as handle:  # what the user's terminal shows: file descriptors 1 and 2
        sys.stdout.flush()
        sys.stderr.flush()
        saved = os.dup(1), os.dup(2)
        os.dup2(handle.fileno(), 1)
        os.dup2(handle.fileno(), 2)
        try:
            result = run_demo(config, say=lines.append)
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
    try:
        yield Demo(base, result, lines, screen.read_text())
    finally:
        patch.undo()


def test_reduced_demo_produces_the_report(demo):
    """The report of all three procedures, and a quiet terminal: one line per task, the full logs in a file."""
    result, lines = demo.result, demo.lines
    print(demo.terminal)  # shown with -s: the task seconds and the timing table
    assert result.weights == "none"  # no ImageNet files offline: the report must say so
    assert result.report == demo.base / "data" / "demo" / "report" / "report.html"  # where the README says
    page = result.report.read_text()
    for section in ("procedure1", "procedure2", "procedure3"):
        assert f"<h2 id='{section}'>" in page
    assert "not transfer learning" in page
    markdown = (result.report.parent / "report.md").read_text()
    assert len(re.findall(r"^- \[procedure1: ", markdown, flags=re.M)) == 4
    assert len(re.findall(r"^- \[procedure[23]: ", markdown, flags=re.M)) == 4
    # every stage was timed, and the pipeline's tasks too
    assert any("pipeline `paper`" in line for line in lines) and any(" train" in line for line in lines)
    assert set(result.timings) and all(t >= 0 for t in result.timings.values())
    # the terminal is quiet: a header, one line per task, the timing table, where things are; the rest is in the log
    shown = demo.terminal.splitlines()
    assert len(shown) <= 100, demo.terminal
    log = demo.base / "data" / "demo" / "logs" / "demo.log"
    assert result.log == log and f"logs:         {log}" in shown
    text = re.sub(r"\x1b\[[0-9;]*m", "", log.read_text())
    assert "[KFP Executor" in text and "Wrote executor output file" in text  # the tasks' own output
    executed = re.findall(r"Executing task '([^']+)'", text)
    assert len(executed) == len(result.tasks) >= 25 and all(r.ok for r in result.tasks)
    assert f"pipeline `paper`: {len(executed)} tasks" in demo.terminal  # the progress bar's total was right
    task_lines = [line for line in shown if re.fullmatch(r"  \S+ .*\b(SUCCESS|FAILURE) +\d+\.\d s", line)]
    # two loop iterations run at once, so tasks finish in another order than they start
    assert sorted(line.split()[0] for line in task_lines) == sorted(executed)
    assert re.search(r"  train +vgg16 finetune roi +SUCCESS", demo.terminal)  # a training task says what it trains
    assert "[KFP Executor" not in demo.terminal and "Executing task" not in demo.terminal
    trains = sum(re.sub(r"-\d+$", "", name) == "train" for name in executed)
    assert any(line.split()[:2] == ["train", str(trains)] for line in shown)  # its row in the timing table


def test_procedure1_inside_the_paper_run(demo):
    """VGG16 x {frozen, finetune} x {full, ROI}, each trained, evaluated, in the compare table with its
    numbers, tracked in MLflow under the run's Kubeflow id; Grad-CAM of the best."""
    from lumbar.tracking import tracking_uri

    check_procedure1(demo.result.run_folder, tracking_uri(), ("vgg16",), ("frozen", "finetune"))


def test_procedure2_inside_the_paper_run(demo):
    """Dataset A from the real brain MRI sample, the supervised backbone, Table 11, its MLflow runs."""
    from lumbar.tracking import tracking_uri
    from tests.conftest import BRAIN_MRI_SAMPLE

    assert BRAIN_MRI_SAMPLE.is_dir(), f"the shared brain MRI sample is missing at {BRAIN_MRI_SAMPLE}"

    check_procedure2(demo.result.run_folder, tracking_uri())


def tour() -> list[str]:
    """The command lines of the README's tour, continuation lines joined, comments left to bash."""
    text = (REPO / "README.md").read_text().split("## A tour of the command line", 1)[1]
    block = text.split("```bash", 1)[1].split("```", 1)[0]
    return [line.strip() for line in re.sub(r"\\\n\s*", " ", block).splitlines() if line.strip()]


#: Tour commands that start a server: the address they answer on once up.
SERVERS = {"lumbar label serve": "http://127.0.0.1:8080/", "mlflow ui": "http://127.0.0.1:5000/"}


def _serves(command: str, url: str, cwd: Path, env: dict[str, str], timeout: float = 90) -> None:
    """Start a server command, wait until ``url`` answers, then stop it (and what it started)."""
    import signal
    import time
    import urllib.error
    import urllib.request

    process = subprocess.Popen(
        ["bash", "-c", command],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert process.poll() is None, f"`{command}` ended: {process.stdout.read().decode()[-2000:]}"
            try:
                with urllib.request.urlopen(url, timeout=2) as answer:
                    assert answer.status == 200
                    return
            except urllib.error.HTTPError as answer:  # up, and asking for a password (the grading page) is an answer
                assert answer.code < 500, f"`{command}` answered {answer.code}"
                return
            except OSError:
                time.sleep(0.5)
        raise AssertionError(f"`{command}` did not answer on {url} in {timeout:.0f} s")
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def test_the_readme_tour_runs_as_written_after_the_demo(demo):
    """Every command of the README's tour, from the folder the demo ran in, with the installed `lumbar`."""
    commands = tour()
    assert len(commands) >= 10 and commands[0].startswith("lumbar --help")
    (demo.base / ".venv").symlink_to(REPO / ".venv")  # `.venv/bin/mlflow ui ...` as the README writes it
    env = {k: v for k, v in os.environ.items() if k not in ("LUMBAR_DATA_DIR", "MLFLOW_TRACKING_URI")}
    env["PATH"] = f"{Path(LUMBAR).parent}{os.pathsep}{env['PATH']}"  # as in an activated .venv
    import time

    for command in commands:
        started = time.perf_counter()
        url = next((u for key, u in SERVERS.items() if key in command), None)
        if url:
            _serves(command, url, demo.base, env)
        else:
            done = subprocess.run(["bash", "-c", command], cwd=demo.base, env=env, capture_output=True, text=True)
            assert done.returncode == 0, f"`{command}` failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        print(f"{time.perf_counter() - started:6.1f} s  {command[:90]}")  # shown with -s, or when a later one fails
    data = demo.base / "data"
    assert (data / "dataset-c" / "manifest.csv").is_file()  # `lumbar dataset build`
    assert (data / "demo" / "models" / "vgg16" / "model.keras").is_file()  # `lumbar train`
    assert (data / "demo" / "report-again" / "report.html").is_file()  # `lumbar report`


def test_demo_pseudonymises_with_its_fixed_key_unless_the_environment_sets_one(monkeypatch):
    """Every demo splits its synthetic patients the same way (the split follows the pseudonyms)."""
    monkeypatch.delenv("LUMBAR_PSEUDONYM_SECRET", raising=False)
    with _pseudonym_secret():
        assert os.environ["LUMBAR_PSEUDONYM_SECRET"] == DEMO_SECRET
    assert "LUMBAR_PSEUDONYM_SECRET" not in os.environ
    monkeypatch.setenv("LUMBAR_PSEUDONYM_SECRET", "a deployment's own")
    with _pseudonym_secret():
        assert os.environ["LUMBAR_PSEUDONYM_SECRET"] == "a deployment's own"


@pytest.mark.slow
def test_full_demo(tmp_path):
    """What `make demo` runs (64 patients, 24 training runs; under 20 minutes on 2 cores): the fixed demo key's split
    (215 test discs, 125 normal), every run above the majority-class F1, and fewer than 100 lines on the terminal."""
    proc = subprocess.run(
        [LUMBAR, "demo", "--out", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        timeout=3600,
        env={
            **{k: v for k, v in os.environ.items() if k != "LUMBAR_PSEUDONYM_SECRET"},  # the demo's own fixed key
            "LUMBAR_DATA_DIR": str(tmp_path / "data"),
        },
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "demo" / "report" / "report.html").is_file()
    assert "MLflow UI:" in proc.stdout
    assert len(proc.stdout.splitlines()) + len(proc.stderr.splitlines()) <= 100, proc.stdout + proc.stderr
    summary = (tmp_path / "demo" / "report" / "report.md").read_text()
    rows = [line.split("|")[1:-1] for line in summary.splitlines() if "| 215 / 125 (paper" in line]
    assert len(rows) == 24  # the fixed demo key's split: 215 test discs, 125 of them normal, in every run's row
    for row in rows:  # F1 % is the second column from the end, the majority-class F1 % the last
        f1, majority = float(row[-2].split()[0]), float(row[-1])
        assert f1 > majority, row


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
