"""The project's own images on a real engine (``make test-images``; ``make test`` leaves them out).

One module, one stack: SeaweedFS, PostgreSQL and MLflow run in their images exactly as k8s/base deploys
them (launch/containers.py). Against that stack the ``dataset_c`` pipeline, a one-configuration
``procedure1`` and the report run twice, once with kfp's subprocess runner and once with every task in
its component image (``DockerRunner``), and the two must agree on their outputs themselves: kfp's Docker
runner reports success for a container that was already removed, so no status is trusted.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from components.images import LOCK_FILE, read_lock
from tests.pipelines.test_local_runs import _outputs  # a local run's task outputs, read as the other runs read them

pytestmark = pytest.mark.images

ROOT = Path(__file__).resolve().parents[2]
#: One configuration, tiny and fast: it runs twice, once per runner.
ONE_CONFIG = {"backbones": "mobilenetv2", "modes": "frozen", "images": "full", "weights": "none"}
TRAINING = {"epochs": 1, "image_size": 32, "seed": 3}
RUNNERS = ("subprocess", "containers")


def _docker(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def images() -> dict[str, dict[str, str]]:
    """The lock file of ``make images``: every image it built (``make test-images`` builds them first)."""
    if _docker("info").returncode != 0:
        pytest.fail("no Docker engine answers: `make test-images` starts one (make engine)")
    lock = ROOT / LOCK_FILE
    assert lock.is_file(), "run `make images` first (make test-images does)"
    return read_lock(lock)


@pytest.fixture(scope="module")
def stack(images, tmp_path_factory):
    from launch.containers import ServiceStack

    with ServiceStack(tmp_path_factory.mktemp("stack")) as services:
        yield services


@pytest.fixture(scope="module")
def runs(stack, synthetic_export, tmp_path_factory):
    """Each runner's dataset_c, procedure1 and report, against the stack, on the same inputs."""
    from kfp import local

    from components.report import report
    from launch.launcher import container_runner, run_local

    env = {
        **stack.client_env(),
        "LUMBAR_PSEUDONYM_SECRET": "images-Qm4vX8rT2nLw6Zp",
        "SOURCE_DATE_EPOCH": "1767225600",  # the reports' build time: the same bytes, the same version
        "LUMBAR_S3_RETRY_SECONDS": "5",
    }
    results = {}
    with pytest.MonkeyPatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        patch.delenv("LUMBAR_KFP_RUN_ID", raising=False)
        for runner in RUNNERS:
            containers = runner == "containers"
            base = tmp_path_factory.mktemp(runner)
            patch.setenv("LUMBAR_DATA_DIR", str(base / "data"))
            root = base / "root"
            export = root / "export"  # DockerRunner mounts only the pipeline root: the export lies inside it
            shutil.copytree(synthetic_export, export)
            store = f"s3://lumbar/{runner}"
            dataset = run_local(
                "dataset_c",
                {"export_uri": str(export), "publish_to": store, "workers": 2},
                root,
                containers=containers,
            )
            trained = run_local(
                "procedure1",
                {"dataset_uri": f"{store}/datasets/dataset-c/latest", **ONE_CONFIG, **TRAINING},
                root,
                containers=containers,
            )
            # the report alone, as the paper pipeline's last task runs it
            runner_config = container_runner(trained.run_id) if containers else local.SubprocessRunner(use_venv=False)
            local.init(runner=runner_config, pipeline_root=str(root), raise_on_error=True)
            page = report(experiment_prefix="lumbar", kfp_run_id=trained.run_id, data_origin="synthetic")
            results[runner] = {
                "dataset": dataset,
                "procedure1": trained,
                "page": Path(page.outputs["page"].path),
                "summary": Path(page.outputs["summary"].path),
            }
    return results


def _metrics(run_folder: Path) -> dict:
    (iteration,) = [f for f in run_folder.glob("for-loop-*-iteration-*") if (f / "evaluate").is_dir()]
    return _outputs(iteration / "evaluate")["metrics"]["metadata"]


def test_dataset_c_in_its_image_builds_the_same_version(runs):
    versions = {}
    for runner, result in runs.items():
        built = _outputs(result["dataset"].folder / "build-dataset-c")["dataset"]["metadata"]
        assert built["patients"] == 8 and built["labelled_images"] > 0, runner
        assert built["published_uri"] == f"s3://lumbar/{runner}/datasets/dataset-c/{built['version']}"
        versions[runner] = built["version"]
    assert versions["containers"] == versions["subprocess"]


def test_procedure1_in_the_training_image_gives_the_same_metrics(runs):
    ours = {runner: _metrics(result["procedure1"].folder) for runner, result in runs.items()}
    assert ours["containers"]["name"] == ours["subprocess"]["name"] == "mobilenetv2-frozen-full"
    numbers = [k for k, v in ours["subprocess"].items() if isinstance(v, float)]
    assert {"accuracy", "f1"} <= set(numbers)
    for key in numbers:
        assert ours["containers"][key] == pytest.approx(ours["subprocess"][key], abs=1e-6), key
    # the containers wrote their model into the host-owned pipeline root as this machine's user
    (iteration,) = runs["containers"]["procedure1"].folder.glob("for-loop-*-iteration-*")
    model = Path(_outputs(iteration / "train")["model"]["uri"]) / "model.keras"
    assert model.is_file() and model.stat().st_uid == os.getuid()


def test_trainings_are_tracked_in_the_mlflow_container_by_run_id(runs, stack, monkeypatch):
    from mlflow import MlflowClient

    for key, value in stack.client_env().items():  # MLflow's basic-auth admin, as the tasks logged
        monkeypatch.setenv(key, value)
    client = MlflowClient(tracking_uri=stack.client_env()["MLFLOW_TRACKING_URI"])
    (experiment,) = [e for e in client.search_experiments() if e.name == "lumbar-procedure1"]
    for runner, result in runs.items():
        run_id = result["procedure1"].run_id
        tracked = client.search_runs([experiment.experiment_id], f"tags.`kfp.run_id` = '{run_id}'")
        assert [r.info.run_name for r in tracked] == ["mobilenetv2-frozen-full"], runner
        # the model went through MLflow's artifact proxy into the SeaweedFS container
        assert client.list_artifacts(tracked[0].info.run_id), runner


def test_the_report_in_its_image_reads_the_same_runs(runs):
    for runner, result in runs.items():
        page = result["page"].read_text(encoding="utf-8")
        assert "mobilenetv2" in page and "synthetic" in page.lower(), runner
    # the two reports' tables hold the same numbers (their run links differ)
    tables = {r: re.findall(r"\d+\.\d\d", result["summary"].read_text()) for r, result in runs.items()}
    assert tables["containers"] and tables["containers"] == tables["subprocess"]


# --- the images themselves ------------------------------------------------------------------------------

#: How each image answers without a cluster: (entrypoint, arguments, expected in the output).
ANSWERS = {
    "BASE_IMAGE": ("lumbar", "--help", "Usage"),
    "TRAIN_CPU_IMAGE": ("lumbar", "--help", "Usage"),
    "MLFLOW_IMAGE": ("mlflow", "server --help", "--backend-store-uri"),
    "SEAWEEDFS_IMAGE": ("weed", "version", "version"),
    "POSTGRES_IMAGE": ("postgres", "--version", "PostgreSQL) 15"),
}


@pytest.mark.parametrize("name", list(ANSWERS))
def test_each_image_runs_as_non_root_and_answers(images, name):
    ref = images[name]["ref"]
    user = _docker("image", "inspect", "-f", "{{.Config.User}}", ref).stdout.strip()
    assert user and user.split(":")[0] not in ("0", "root"), f"{name} runs as {user!r}"
    entrypoint, args, expected = ANSWERS[name]
    result = _docker("run", "--rm", "--network", "none", "--entrypoint", entrypoint, ref, *args.split())
    assert result.returncode == 0 and expected in result.stdout + result.stderr, (name, result.stderr[-500:])
    uid = _docker("run", "--rm", "--network", "none", "--entrypoint", "id", ref, "-u").stdout.strip()
    assert uid == "10001", name


@pytest.mark.parametrize("name", list(ANSWERS))
def test_each_image_has_its_bill_of_materials(images, name):
    sbom = ROOT / "build" / "sbom"
    packages = (sbom / f"{name}.dpkg.tsv").read_text().splitlines()
    assert any(line.startswith("libc6\t") for line in packages)
    if name == "POSTGRES_IMAGE":
        assert any(line.startswith("postgresql-15\t") for line in packages)
    if name in ("BASE_IMAGE", "TRAIN_CPU_IMAGE", "MLFLOW_IMAGE"):
        bom = json.loads((sbom / f"{name}.cdx.json").read_text())
        assert bom["bomFormat"] == "CycloneDX"
        names = {re.sub(r"[-_.]+", "-", c["name"]).lower() for c in bom["components"]}  # PEP 503 names
        assert ("mlflow" if name == "MLFLOW_IMAGE" else "tensorflow-cpu") in names
        assert all(c.get("version") for c in bom["components"])


#: What must never be in an image: private keys, tokens, this machine's CA bundle, the test's secrets.
PRIVATE_KEY = re.compile(  # a whole PEM block with its key (a library's parser names the marker alone)
    rb"-----BEGIN (RSA |EC |OPENSSH |DSA |ENCRYPTED )?PRIVATE KEY-----\r?\n[A-Za-z0-9+/=:,\-\s]{64,}?-----END"
)
TOKENS = re.compile(  # standing alone, not inside base64 data (a font's base64 holds "AKIA..." by chance),
    # and not AWS's documentation key (AKIA...EXAMPLE, in boto3's examples)
    rb"(?<![A-Za-z0-9+/])(ghp_[A-Za-z0-9]{36}|AKIA(?![0-9A-Z]{9}EXAMPLE)[0-9A-Z]{16}|xox[bp]-[A-Za-z0-9-]{20,})"
    rb"(?![A-Za-z0-9+/=])"
)


def _host_ca_bundle() -> tuple[int, str] | None:
    path = Path("/etc/ssl/certs/ca-certificates.crt")
    if not path.is_file():
        return None
    data = path.read_bytes()
    return len(data), hashlib.sha256(data).hexdigest()


def test_no_secret_token_key_or_host_ca_bundle_in_any_layer(images, stack):
    """``docker history`` and every file of every layer (``docker save``) of each image built."""
    # the stack's random keys and passwords (its user names are fixed words that the source itself holds)
    secrets = [
        v.encode() for s in stack.secrets.values() for k, v in s.items() if k.endswith(("PASSWORD", "KEY", "_ID"))
    ]
    bundle = _host_ca_bundle()
    seen = set()
    for name, entry in images.items():
        image_id = entry.get("id") or entry["ref"]
        if image_id in seen:
            continue
        seen.add(image_id)
        history = _docker("history", "--no-trunc", "--format", "{{.CreatedBy}}", entry["ref"]).stdout
        assert not re.search(r"(?i)(password|secret|token)=\S", history), name
        assert "ca-certificates.crt" not in history, name
        saved = subprocess.Popen(["docker", "save", entry["ref"]], stdout=subprocess.PIPE)
        with tarfile.open(fileobj=saved.stdout, mode="r|") as image:
            for blob in image:  # layers are <id>/layer.tar (docker save) or blobs/sha256/<digest> (OCI)
                if blob.isfile() and (blob.name.endswith("layer.tar") or blob.name.startswith("blobs/")):
                    _scan_layer(image.extractfile(blob), name, secrets, bundle)
        assert saved.wait() == 0, name


def _scan_layer(blob, name: str, secrets: list[bytes], bundle: tuple[int, str] | None) -> None:
    """Every file of one layer, streamed: no key file, private key, token, test secret or host CA bundle."""
    try:
        files = tarfile.open(fileobj=blob, mode="r|*")  # noqa: SIM115 (closed below)
    except tarfile.ReadError:
        return  # a config or manifest blob, not a layer
    with files:
        for member in files:
            if member.isfile():
                _scan_file(files, member, name, secrets, bundle)


def _scan_file(files, member, name: str, secrets: list[bytes], bundle: tuple[int, str] | None) -> None:
    where = (name, member.name)
    assert not member.name.endswith(("id_rsa", "id_ed25519", ".netrc", ".pypirc")), where
    if member.size > 512 * 1024 and (bundle is None or member.size != bundle[0]):
        return
    content = files.extractfile(member).read()
    if bundle and len(content) == bundle[0]:
        assert hashlib.sha256(content).hexdigest() != bundle[1], f"the host's CA bundle is in {where}"
    if not re.search(r"(?i)test[^/]*/", member.name):  # packages' own tests (tests/, SelfTest/) hold dummy keys
        assert not PRIVATE_KEY.search(content), where
        assert not TOKENS.search(content), where
    assert not any(secret in content for secret in secrets), where
