"""Shared fixtures: a real synthetic PACS export (DICOM written by pydicom) and a dataset built from it."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from lumbar.dataset_c import BuildConfig, build_dataset_c
from lumbar.synth import SynthConfig, write_pacs_export

# the project's shared data lies beside the checkout (../shared); LUMBAR_SHARED_DIR points elsewhere
SHARED = Path(os.environ.get("LUMBAR_SHARED_DIR") or Path(__file__).resolve().parents[1].parent / "shared")
BRAIN_MRI_SAMPLE = SHARED / "data" / "brain-mri-sample"
TEST_SECRET_ENV = "LUMBAR_TEST_PSEUDONYM_SECRET"
TEST_SECRET = "tq7-Kx2mVw9pLz4Rb8Nc"

_SUITE_STARTED = pytest.StashKey[float]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_SUITE_STARTED] = time.monotonic()


def pytest_unconfigure(config: pytest.Config) -> None:
    """The suite's wall time, as the last line (issue 18: `make test` in 10 minutes on two cores)."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and _SUITE_STARTED in config.stash:
        reporter.write_line(f"suite: {time.monotonic() - config.stash[_SUITE_STARTED]:.0f} s")


#: The test files that take longest (kfp.local runs, training), measured; with pytest-xdist each file
#: stays on one worker and files are handed out in collection order, so these go first (longest
#: processing time first) and the short files fill in around them.
LONGEST_FIRST = (
    "tests/report/test_demo.py",
    "tests/test_train.py",
    "tests/test_pretrain.py",
    "tests/pipelines/test_local_runs.py",
    "tests/report/test_report.py",
    "tests/test_gradcam.py",
    "tests/test_distributed.py",
    "tests/k8s/test_object_store.py",
    "tests/test_cli.py",
    "tests/integration/test_storage.py",
    "tests/test_spider.py",
    "tests/test_models.py",
)


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    rank = {path: i for i, path in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))  # stable: the rest keep their order


@pytest.fixture(scope="session", autouse=True)
def _test_secret() -> None:
    os.environ[TEST_SECRET_ENV] = TEST_SECRET


@pytest.fixture(scope="session")
def synthetic_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Eight patients written once per session (about 90 DICOM files each)."""
    out = tmp_path_factory.mktemp("export") / "pacs"
    write_pacs_export(out, SynthConfig(patients=8, seed=11, size=128, workers=2))
    return out


@pytest.fixture(scope="session")
def built_dataset(synthetic_export: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Dataset C built from :func:`synthetic_export`; its pseudonym key is written beside it as ``key.csv``."""
    base = tmp_path_factory.mktemp("datasets")
    out = base / "dataset-c"
    config = BuildConfig(
        source=synthetic_export,
        labels=synthetic_export / "labels.csv",
        out=out,
        key_secret_env=TEST_SECRET_ENV,
        workers=2,
        seed=3,
        write_key=base / "key.csv",
    )
    build_dataset_c(config)
    return out


@pytest.fixture(scope="session")
def local_services(tmp_path_factory: pytest.TempPathFactory):
    """Real SeaweedFS S3 and MLflow servers on free loopback ports, started once per session."""
    from lumbar.services import LocalServices, ServicesConfig

    services = LocalServices(ServicesConfig(tmp_path_factory.mktemp("services"), s3_port=0, mlflow_port=0))
    services.up()
    yield services
    services.down()


@pytest.fixture
def s3_env(local_services, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The environment a client needs for the session's servers, set for one test."""
    env = local_services.client_env()
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("LUMBAR_S3_RETRY_SECONDS", "5")
    return env


@pytest.fixture
def bucket(s3_env) -> str:
    """A fresh, empty bucket for one test."""
    import uuid

    from lumbar.storage import open_store

    name = f"t-{uuid.uuid4().hex[:12]}"
    open_store(f"s3://{name}", create_bucket=True)
    return name


@pytest.fixture(scope="session")
def learnable_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Dataset C of 40 synthetic patients (200 labelled disc images), big enough for a model to learn from."""
    base = tmp_path_factory.mktemp("learnable")
    export = base / "export"
    write_pacs_export(export, SynthConfig(patients=40, seed=1, size=128, workers=2))
    out = base / "dataset-c"
    build_dataset_c(
        BuildConfig(source=export, labels=export / "labels.csv", out=out, key_secret_env=TEST_SECRET_ENV, workers=2)
    )
    return out


@pytest.fixture
def local_tracking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """MLflow in a local SQLite store of this test (no server)."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("LUMBAR_DATA_DIR", str(tmp_path / "data"))
    (tmp_path / "data").mkdir()
    return f"sqlite:///{tmp_path / 'data' / 'mlflow.db'}"


def run_and_kill_when(args: list[str], env: dict[str, str], ready, timeout: float = 240) -> None:
    """Start a command, wait until ``ready()`` holds (or the command ends), then SIGKILL it: a real crash."""
    import signal
    import subprocess
    import time

    process = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if ready():
                break
        except (OSError, ValueError, KeyError):  # a state file caught mid-write
            pass
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()


def run_in_process(*args):
    """The `lumbar` command tree run in this process: its exit status, standard output and error.

    An exception that escaped the command (a traceback in a real process) fails the test here.
    """
    import subprocess

    from typer.testing import CliRunner

    from lumbar.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return subprocess.CompletedProcess(args, result.exit_code, result.stdout, result.stderr)
