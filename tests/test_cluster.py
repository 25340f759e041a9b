"""``lumbar cluster check`` against recorded Kubernetes API objects.

The API server here is a small fake on 127.0.0.1 that serves recorded JSON objects (a namespace, the
config map, the secrets, two nodes, the KFP healthz answer through the service proxy, the probe Job)
at the paths the ``kubernetes`` client asks for; the CLI reaches it through a kubeconfig, as it would
a real cluster. Each test removes or changes one object and checks that exactly that check fails.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

import pytest

from pipelines.settings import ClusterSettings, cluster_references

LUMBAR = str(Path(sys.executable).with_name("lumbar"))
NS = "kubeflow"


def _recorded() -> dict[str, dict]:
    config_map, config_keys, secrets = cluster_references(ClusterSettings())
    b64 = base64.b64encode(b"redacted").decode()
    objects = {
        f"/api/v1/namespaces/{NS}": {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}},
        f"/api/v1/namespaces/{NS}/configmaps/{config_map}": {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": config_map, "namespace": NS},
            "data": {k: "http://example" for k in config_keys},
        },
        "/api/v1/nodes": {
            "apiVersion": "v1",
            "kind": "NodeList",
            "metadata": {},
            "items": [
                {
                    "metadata": {"name": "cpu-1", "labels": {"kubernetes.io/os": "linux"}},
                    "spec": {},
                    "status": {"allocatable": {"cpu": "8", "memory": "32Gi"}},
                },
                {
                    "metadata": {"name": "gpu-1", "labels": {"nvidia.com/gpu.present": "true"}},
                    "spec": {"taints": [{"key": "nvidia.com/gpu", "effect": "NoSchedule", "value": "present"}]},
                    "status": {"allocatable": {"cpu": "32", "memory": "256Gi", "nvidia.com/gpu": "8"}},
                },
            ],
        },
        f"/api/v1/namespaces/{NS}/services/ml-pipeline:http/proxy/apis/v2beta1/healthz": {
            "commit_sha": "3b0d5d1",
            "tag_name": "2.14.3",
            "multi_user": False,
            "pipeline_store": "database",
        },
    }
    for name, keys in secrets.items():
        objects[f"/api/v1/namespaces/{NS}/secrets/{name}"] = {
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": NS},
            "data": dict.fromkeys(keys, b64),
        }  # fmt: skip
    return objects


class _Api(ThreadingHTTPServer):
    objects: dict
    job_outcome: str
    requests: list


class _Handler(BaseHTTPRequestHandler):
    def _send(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _missing(self) -> None:
        self._send(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404})

    def do_GET(self):
        path = unquote(self.path.split("?")[0])  # the client quotes the service name's colon
        self.server.requests.append(("GET", path))
        if path.endswith("/jobs/lumbar-cluster-probe/status"):
            status = {"succeeded": 1} if self.server.job_outcome == "ok" else {"failed": 1}
            return self._send(
                200, {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "p"}, "status": status}
            )
        if path in self.server.objects:
            return self._send(200, self.server.objects[path])
        self._missing()

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append(("POST", self.path, body))
        self._send(201, body)

    def do_DELETE(self):
        self.server.requests.append(("DELETE", self.path.split("?")[0]))
        self._missing()

    def log_message(self, *args):
        pass


@pytest.fixture
def api(tmp_path):
    server = _Api(("127.0.0.1", 0), _Handler)
    server.objects, server.job_outcome, server.requests = _recorded(), "ok", []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": f"http://127.0.0.1:{server.server_address[1]}"}}],
            "users": [{"name": "me", "user": {"token": "fake-token"}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "me"}}],
        })
    )  # fmt: skip
    server.kubeconfig = kubeconfig
    yield server
    server.shutdown()
    server.server_close()


def _check(api, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [LUMBAR, "cluster", "check", "--kubeconfig", str(api.kubeconfig), "--timeout", "5", *args],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def _rows(stdout: str) -> dict[str, str]:
    """check name -> ✓ or ✗, from the printed table."""
    rows = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.split("│")]
        if len(cells) > 3 and cells[1] in ("✓", "✗"):
            rows[cells[2]] = cells[1]
    return rows


def test_all_good(api):
    result = _check(api)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = _rows(result.stdout)
    assert set(rows.values()) == {"✓"}
    _, _, secrets = cluster_references(ClusterSettings())
    assert {f"secret {s}" for s in secrets} <= set(rows)
    assert {"namespace kubeflow", "config map lumbar-config", "GPU node", "Kubeflow Pipelines"} <= set(rows)
    assert "gpu-1 (8 GPU)" in result.stdout and "2.14.3" in result.stdout
    assert "redacted" not in result.stdout


def _break(api, what: str) -> str:
    """Break one thing; return the check name that must fail."""
    objects = api.objects
    config_map, _, _ = cluster_references(ClusterSettings())
    if what == "namespace":
        del objects[f"/api/v1/namespaces/{NS}"]
        return "namespace kubeflow"
    if what == "config map key":
        del objects[f"/api/v1/namespaces/{NS}/configmaps/{config_map}"]["data"]["MLFLOW_TRACKING_URI"]
        return f"config map {config_map}"
    if what.startswith("secret "):
        name = what.split()[1]
        if name == "lumbar-pseudonym":
            del objects[f"/api/v1/namespaces/{NS}/secrets/{name}"]
        else:
            objects[f"/api/v1/namespaces/{NS}/secrets/{name}"]["data"].popitem()
        return what
    nodes = objects["/api/v1/nodes"]["items"]
    if what == "gpu label":
        nodes[1]["metadata"]["labels"] = {}
        return "GPU node"
    if what == "gpu allocatable":
        del nodes[1]["status"]["allocatable"]["nvidia.com/gpu"]
        return "GPU node"
    if what == "gpu taint":
        nodes[1]["spec"]["taints"].append({"key": "dedicated", "effect": "NoExecute", "value": "ml"})
        return "GPU node"
    if what == "kfp old":
        objects[f"/api/v1/namespaces/{NS}/services/ml-pipeline:http/proxy/apis/v2beta1/healthz"]["tag_name"] = "2.4.1"
        return "Kubeflow Pipelines"
    if what == "kfp missing":
        del objects[f"/api/v1/namespaces/{NS}/services/ml-pipeline:http/proxy/apis/v2beta1/healthz"]
        return "Kubeflow Pipelines"
    raise AssertionError(what)


_, _, _SECRETS = cluster_references(ClusterSettings())
BREAKS = [
    "namespace", "config map key", *(f"secret {s}" for s in _SECRETS),
    "gpu label", "gpu allocatable", "gpu taint", "kfp old", "kfp missing",
]  # fmt: skip


@pytest.mark.parametrize("what", BREAKS)
def test_each_check_fails_once(api, what):
    failing = _break(api, what)
    result = _check(api)
    assert result.returncode == 2, result.stdout
    rows = _rows(result.stdout)
    assert [name for name, mark in rows.items() if mark == "✗"] == [failing], result.stdout
    assert result.stderr.strip() == f"error: 1 of {len(rows)} checks failed"
    if what == "kfp old":
        assert "is 2.4.1; lumbar's pipelines need 2.14.0" in result.stdout, result.stdout


def test_no_gpu_skips_the_node_check_and_the_probe_job(api):
    api.objects["/api/v1/nodes"]["items"].pop()
    result = _check(api, "--no-gpu", "--in-cluster-probe")
    assert result.returncode == 0, result.stdout
    rows = _rows(result.stdout)
    assert "GPU node" not in rows and rows["endpoints from inside"] == "✓"
    (post,) = [r for r in api.requests if r[0] == "POST"]
    assert post[1] == f"/apis/batch/v1/namespaces/{NS}/jobs"
    env = post[2]["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {e["valueFrom"]["configMapKeyRef"]["name"] for e in env} == {"lumbar-config"}
    api.job_outcome = "failed"
    result = _check(api, "--no-gpu", "--in-cluster-probe")
    assert result.returncode == 2 and _rows(result.stdout)["endpoints from inside"] == "✗"
