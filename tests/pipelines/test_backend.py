"""What a real Kubeflow Pipelines backend needs of the compiled pipelines, checked without one.

The backend's version comes from recorded healthz answers served by a small HTTP server on 127.0.0.1
(the JSON shape of ``backend/src/apiserver/main.go``'s ``/apis/v2beta1/healthz`` handler); the cache
rule, the sizing table and the image lock file are checked on the compiled IR YAML.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from components.images import BASE_IMAGE, IMAGES, MLFLOW_IMAGE, TRAIN_IMAGE, compiled_images, record, split_ref
from launch.launcher import PIPELINES, SubmitError, compile_pipeline, submit
from lumbar.kfp_backend import MIN_KFP_VERSION, BackendError, check_backend, credentials, parse_version
from pipelines.settings import NO_GPU_PARALLELISM, SIZING, ClusterSettings

LUMBAR = str(Path(sys.executable).with_name("lumbar"))


def healthz_json(tag: str, multi_user: bool = False) -> dict:
    return {"commit_sha": "3b0d5d1", "tag_name": tag, "multi_user": multi_user, "pipeline_store": "database"}


class _Backend(ThreadingHTTPServer):
    answer: dict
    seen: list


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        self.server.seen.append((self.path, self.headers.get("Authorization")))
        if self.path == "/apis/v2beta1/healthz":
            body = json.dumps(self.server.answer).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self.send_error(404)

    def log_message(self, *args):
        pass


@pytest.fixture
def backend():
    server = _Backend(("127.0.0.1", 0), _Handler)
    server.seen, server.answer = [], {}
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _url(server) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


def test_version_parsing():
    assert parse_version("2.14.0") == (2, 14, 0)
    assert parse_version("v2.15.1-rc.2") == (2, 15, 1)
    assert parse_version("2.3") == (2, 3, 0)
    assert parse_version("unknown") is None


def test_an_old_backend_is_refused_by_submit_naming_both_versions(backend):
    backend.answer = healthz_json("2.5.0")
    result = subprocess.run(
        [LUMBAR, "pipeline", "submit", "dataset_c", "--host", _url(backend), "export_uri=s3://pacs/export"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: Kubeflow Pipelines at")
    assert "is 2.5.0" in lines[0] and f"need {MIN_KFP_VERSION} or newer" in lines[0]
    assert [p for p, _ in backend.seen] == ["/apis/v2beta1/healthz"]  # nothing uploaded


def test_a_new_enough_backend_is_accepted(backend):
    backend.answer = healthz_json("2.14.3")
    info = check_backend(_url(backend))
    assert info.tag == "2.14.3" and not info.multi_user
    backend.answer = healthz_json("2.13.9")
    with pytest.raises(BackendError, match=r"is 2\.13\.9; .*need 2\.14\.0"):
        check_backend(_url(backend))


def test_unknown_version_refused_and_multi_user_needs_a_namespace(backend):
    backend.answer = healthz_json("unknown")
    with pytest.raises(SubmitError, match="does not report a version"):
        submit("dataset_c", _url(backend), {"export_uri": "s3://pacs/export"})
    backend.answer = healthz_json("2.14.0", multi_user=True)
    with pytest.raises(SubmitError, match="multi-user Kubeflow; give --namespace"):
        submit("dataset_c", _url(backend), {"export_uri": "s3://pacs/export"})


def test_token_from_the_environment_reaches_the_backend(backend, tmp_path, monkeypatch):
    backend.answer = healthz_json("2.14.0")
    monkeypatch.setenv("LUMBAR_KFP_TOKEN", "tok-from-env")
    check_backend(_url(backend), credentials())
    assert backend.seen[-1] == ("/apis/v2beta1/healthz", "Bearer tok-from-env")
    monkeypatch.delenv("LUMBAR_KFP_TOKEN")
    token_file = tmp_path / "token"
    token_file.write_text("tok-from-file\n")
    monkeypatch.setenv("KF_PIPELINES_SA_TOKEN_PATH", str(token_file))
    creds = credentials()
    assert creds.path == str(token_file) and "tok-from-file" not in repr(creds)
    check_backend(_url(backend), creds)
    assert backend.seen[-1][1] == "Bearer tok-from-file"


# --- compiled YAML ------------------------------------------------------------------------------

SETTINGS = {
    "gpu": ClusterSettings(),
    "gpu-cache-training": ClusterSettings(cache_training=True),
    "no-gpu": ClusterSettings(gpu=False, parallelism=NO_GPU_PARALLELISM),
}
#: Pipeline parameters that name mutable things (a pointer, an export, source folders): never a cached task's input.
MUTABLE = ("_uri", "uri", "_sources", "publish_to")


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    out = tmp_path_factory.mktemp("backend")
    return {
        (name, key): yaml.safe_load_all(compile_pipeline(name, out / f"{name}-{key}.yaml", s).read_text())
        for name in PIPELINES
        for key, s in SETTINGS.items()
    }


def _spec(compiled, name, key) -> dict:
    docs = compiled[(name, key)]
    if not isinstance(docs, list):
        docs = compiled[(name, key)] = list(docs)
    return docs[0]


def _tasks(spec: dict):
    dags = [("root", spec["root"]), *((n, c) for n, c in spec["components"].items() if "dag" in c)]
    for dag_name, component in dags:
        for task_name, task in component["dag"]["tasks"].items():
            yield dag_name, task_name, task


@pytest.mark.parametrize("key", list(SETTINGS))
@pytest.mark.parametrize("name", list(PIPELINES))
def test_cached_tasks_take_only_content_addressed_inputs(compiled, name, key):
    """No cached task sees ``latest`` or a mutable URI: those pass through the uncached resolve step."""
    spec = _spec(compiled, name, key)
    root_params = spec["root"]["inputDefinitions"]["parameters"]
    cached = 0
    for dag, task_name, task in _tasks(spec):
        if not task.get("cachingOptions", {}).get("enableCache", False):
            continue
        cached += 1
        for param, source in task.get("inputs", {}).get("parameters", {}).items():
            constant = json.dumps(source.get("runtimeValue", {}).get("constant", ""))
            assert "latest" not in constant, (task_name, param)
            # a run-scoped placeholder ({{$.pipeline_job_uuid}} ...) would make the cache key differ every run
            assert "{{$.pipeline_job_" not in constant, f"{name}: cached {task_name} takes the run-scoped {param}"
            parent = source.get("componentInputParameter", "")
            if dag == "root" and parent:
                assert not parent.endswith(MUTABLE), f"{name}: cached {task_name} takes pipeline parameter {parent}"
                assert parent in root_params
            producer = source.get("taskOutputParameter", {}).get("producerTask")
            if producer:
                producer_task = spec["root"]["dag"]["tasks"].get(producer) or {}
                ref = producer_task.get("componentRef", {}).get("name", "")
                # a parameter from another task: the pinning step, or a cached (deterministic) one
                assert ref == "comp-resolve-dataset" or producer_task.get("cachingOptions", {}).get("enableCache")
    if name != "dataset_c":
        assert cached, "expected the fetch and plan steps to be cached"
    builds = [t for _, n, t in _tasks(spec) if n.startswith("build-dataset")]
    assert all(not t.get("cachingOptions", {}).get("enableCache", False) for t in builds)


@pytest.mark.parametrize("name", ["procedure1", "procedure2", "procedure3"])
def test_latest_is_pinned_before_the_cached_fetch(compiled, name):
    tasks = dict((n, t) for _, n, t in _tasks(_spec(compiled, name, "gpu")))
    resolve, fetch = tasks["resolve-dataset"], tasks["fetch-dataset"]
    assert not resolve.get("cachingOptions", {}).get("enableCache", False)
    assert resolve["inputs"]["parameters"]["uri"]["componentInputParameter"] == "dataset_uri"
    assert fetch["cachingOptions"]["enableCache"]
    for param in ("uri", "version"):
        assert fetch["inputs"]["parameters"][param]["taskOutputParameter"]["producerTask"] == "resolve-dataset"


def _quantity(text: str) -> float:
    """Kubernetes quantity -> a number (CPU in cores, memory in GiB)."""
    units = {"m": 1e-3, "Mi": 1 / 1024, "Gi": 1.0}
    for suffix, factor in units.items():
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * factor
    return float(text)


@pytest.mark.parametrize("key", list(SETTINGS))
@pytest.mark.parametrize("name", list(PIPELINES))
def test_the_sizing_table_reaches_every_task(compiled, name, key):
    spec = _spec(compiled, name, key)
    gpu = SETTINGS[key].gpu
    rows = {(r.cpu, r.memory, r.cpu_limit, r.memory_limit): kind for kind, cols in SIZING.items() for r in [cols[gpu]]}
    for executor, body in spec["deploymentSpec"]["executors"].items():
        res = body["container"]["resources"]
        got = (
            res["resourceCpuRequest"],
            res["resourceMemoryRequest"],
            res["resourceCpuLimit"],
            res["resourceMemoryLimit"],
        )
        assert got in rows, f"{executor}: {got} is no SIZING row"
        if executor.startswith(("exec-train", "exec-pretrain")):
            assert rows[got] == "train", executor


LAPTOP_CPU, LAPTOP_GIB = 4.0, 10.0  # what a 16 GB laptop's kind node has left for tasks


def _peak(spec: dict, component: str) -> tuple[float, float]:
    """The most CPU and memory a component's tasks request at once.

    A container: its requests. A DAG: the heaviest set of its tasks none of which depends on another
    (those can run at the same time), by brute force over the few tasks of a loop body.
    """
    from itertools import combinations

    body = spec["components"][component]
    if "dag" not in body:
        res = spec["deploymentSpec"]["executors"][body["executorLabel"]]["container"]["resources"]
        return _quantity(res["resourceCpuRequest"]), _quantity(res["resourceMemoryRequest"])
    tasks = body["dag"]["tasks"]
    weight = {n: _peak(spec, t["componentRef"]["name"]) for n, t in tasks.items()}
    ancestors: dict[str, set[str]] = {}

    def above(name: str) -> set[str]:
        if name not in ancestors:
            direct = set(tasks[name].get("dependentTasks", []))
            ancestors[name] = direct.union(*(above(d) for d in direct)) if direct else set()
        return ancestors[name]

    best = (0.0, 0.0)
    for size in range(1, len(tasks) + 1):
        for group in combinations(tasks, size):
            if any(a in above(b) for a in group for b in group):
                continue
            total = (sum(weight[n][0] for n in group), sum(weight[n][1] for n in group))
            best = max(best, total, key=lambda x: x[1])
    return best


@pytest.mark.parametrize("name", list(PIPELINES))
def test_no_gpu_pipelines_fit_a_laptop(compiled, name):
    """Every task fits the node, and a fan-out's concurrent iterations fit together.

    (Different fan-outs of the ``paper`` pipeline may wait for each other: their pods stay Pending
    until the node has room, which Kubernetes allows.)
    """
    spec = _spec(compiled, name, "no-gpu")
    loops = 0
    for _, task_name, task in _tasks(spec):
        cpu, mem = _peak(spec, task["componentRef"]["name"])
        if "parameterIterator" in task:
            loops += 1
            limit = task["iteratorPolicy"]["parallelismLimit"]
            assert limit == NO_GPU_PARALLELISM
            cpu, mem = cpu * limit, mem * limit
        assert cpu <= LAPTOP_CPU and mem <= LAPTOP_GIB, f"{name}/{task_name} asks {cpu} CPU, {mem:.1f} GiB"
    assert loops or name == "dataset_c"


def test_no_gpu_compile_defaults_to_the_laptop_parallelism(tmp_path):
    out = tmp_path / "p1.yaml"
    result = subprocess.run(
        [LUMBAR, "pipeline", "compile", "procedure1", "--no-gpu", "-o", str(out)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    spec = next(yaml.safe_load_all(out.read_text()))
    loops = [t for _, _, t in _tasks(spec) if "parameterIterator" in t]
    assert [t["iteratorPolicy"]["parallelismLimit"] for t in loops] == [NO_GPU_PARALLELISM]


# --- images --------------------------------------------------------------------------------------


def test_lock_file_digests_reach_the_compiled_yaml(tmp_path):
    lock = tmp_path / "images.lock.json"
    digests = {}
    for i, (key, ref) in enumerate(IMAGES.items()):
        _, name, tag = split_ref(ref)
        digests[key] = "sha256:" + f"{i + 1:x}" * 64
        record(lock, key, f"registry.example:5000/team/{name}:{tag}-abc123", image_id="sha256:" + "e" * 64)
        record(lock, key, f"registry.example:5000/team/{name}:{tag}-abc123", digest=digests[key])
    out = tmp_path / "p1.yaml"
    result = subprocess.run(
        [LUMBAR, "pipeline", "compile", "procedure1", "-o", str(out), "--images-lock", str(lock)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    images = {
        e["container"]["image"]
        for e in next(yaml.safe_load_all(out.read_text()))["deploymentSpec"]["executors"].values()
    }
    assert images == {
        f"registry.example:5000/team/lumbar@{digests['BASE_IMAGE']}",
        f"registry.example:5000/team/lumbar-train@{digests['TRAIN_IMAGE']}",
    }


def test_image_registry_option_and_environment(tmp_path, monkeypatch):
    mapping = compiled_images("registry.example/ours")
    assert mapping[BASE_IMAGE] == "registry.example/ours/" + BASE_IMAGE  # the default is a local name
    assert mapping[MLFLOW_IMAGE].startswith("registry.example/ours/lumbar-mlflow:")
    out = tmp_path / "d.yaml"
    env = {"LUMBAR_IMAGE_REGISTRY": "registry.example/env", "PATH": "/usr/bin:/bin"}
    result = subprocess.run(
        [LUMBAR, "pipeline", "compile", "dataset_c", "-o", str(out)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    text = out.read_text()
    assert "image: registry.example/env/lumbar:" in text and f"image: {BASE_IMAGE}\n" not in text
    assert TRAIN_IMAGE not in text


def test_a_lock_file_in_another_registry_is_refused(tmp_path):
    lock = tmp_path / "images.lock.json"
    record(lock, "BASE_IMAGE", "registry.a/lumbar:1", digest="sha256:" + "a" * 64)
    from lumbar.errors import InputError

    with pytest.raises(InputError, match=r"registry\.a, not in registry\.b"):
        compiled_images("registry.b", lock)
    with pytest.raises(InputError, match="not a sha256 digest"):
        record(lock, "BASE_IMAGE", "registry.a/lumbar:1", digest="sha256:short")


# --- Dockerfiles --------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]


def test_constraints_are_the_resolved_environment():
    """docker/constraints.txt is what `make constraints` writes from this venv (no TensorFlow, no dev tools)."""
    result = subprocess.run([sys.executable, str(ROOT / "docker" / "freeze.py")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    committed = (ROOT / "docker" / "constraints.txt").read_text()
    assert committed == result.stdout, "run `make constraints` after changing dependencies"
    names = {line.split("==")[0] for line in committed.splitlines() if not line.startswith("#")}
    assert {"kfp", "keras", "mlflow", "numpy", "protobuf", "pydicom"} <= names
    assert not names & {"tensorflow", "tensorflow-cpu", "pytest", "ruff", "jax", "lumbar"}


@pytest.mark.parametrize(
    ("dockerfile", "tensorflow"),
    [
        ("base.Dockerfile", '"tensorflow-cpu==${TENSORFLOW_VERSION}"'),
        ("train.Dockerfile", '"tensorflow[and-cuda]==${TENSORFLOW_VERSION}"'),
    ],
)
def test_dockerfiles_install_pinned_dependencies_before_the_source(dockerfile, tensorflow):
    lines = (ROOT / "docker" / dockerfile).read_text().splitlines()
    build = lines[: next(i for i, line in enumerate(lines) if line.startswith("FROM") and " AS " not in line)]
    text = "\n".join(build)
    pins = text.index("-r constraints.txt")
    assert text.index("COPY docker/constraints.txt") < pins < text.index("COPY src ./src")
    assert tensorflow in text[pins : text.index("COPY src ./src")]
    assert (
        "pip install --no-cache-dir --no-deps ." in text
    )  # lumbar itself: its declared deps would pull tensorflow-cpu
    assert "uninstall" not in text and ("tensorflow-cpu==" not in text) == (dockerfile == "train.Dockerfile")


# --- the pinning step and the cached fetch, run as functions ----------------------------------------


class _Artifact:
    def __init__(self, path: Path):
        self.path, self.metadata = str(path), {}


def test_latest_is_pinned_to_its_version_and_a_changed_folder_is_refused(tmp_path):
    from components.fetch_dataset import fetch_dataset
    from components.resolve_dataset import resolve_dataset
    from lumbar.errors import InputError
    from lumbar.versions import publish_dataset

    folder = tmp_path / "ds"
    folder.mkdir()
    (folder / "manifest.csv").write_text("path,label\na.png,0\n")
    (folder / "a.png").write_bytes(b"one")
    store = tmp_path / "store"
    first = publish_dataset(folder, store.as_uri(), "dataset-c")
    latest = f"{store.as_uri()}/datasets/dataset-c/latest"
    pinned = resolve_dataset.python_func(uri=latest)
    assert pinned.version == first.version and pinned.uri.endswith(f"/datasets/dataset-c/{first.version}")
    assert not pinned.uri.endswith("/latest")
    (folder / "a.png").write_bytes(b"two")  # a new version moves `latest`; the pinned one stays
    second = publish_dataset(folder, store.as_uri(), "dataset-c")
    assert resolve_dataset.python_func(uri=latest).version == second.version != first.version
    out = _Artifact(tmp_path / "fetched")
    fetch_dataset.python_func(uri=pinned.uri, dataset=out, version=pinned.version)
    assert (tmp_path / "fetched" / "a.png").read_bytes() == b"one" and out.metadata["version"] == first.version
    # a local folder is pinned by its content: changed after pinning, the fetch refuses it
    local = resolve_dataset.python_func(uri=str(folder))
    (folder / "a.png").write_bytes(b"three")
    with pytest.raises(InputError, match=f"not the pinned {local.version}"):
        fetch_dataset.python_func(uri=local.uri, dataset=_Artifact(tmp_path / "f2"), version=local.version)
