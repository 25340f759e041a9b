"""``lumbar cluster check``: is a Kubernetes cluster ready for the compiled pipelines' first run?

Each check reads the cluster through the ``kubernetes`` client and gives a :class:`Check` with the fix
for a failure: the namespace exists; the config map and every secret the pipelines mount exist with
the keys they read; a node carries the GPU label the training tasks select, only taints they tolerate,
and allocatable GPUs; the Kubeflow Pipelines backend answers and is new enough
(:data:`lumbar.kfp_backend.MIN_KFP_VERSION`); optionally, a short Job in the namespace reaches the
object store and MLflow endpoints of the config map (what the NetworkPolicy allows from inside).

What the pipelines mount is derived from their settings (``pipelines.settings.cluster_references``)
by the CLI; this module takes it as a :class:`Requirements` and never imports kfp.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lumbar.errors import InputError
from lumbar.kfp_backend import BackendError, Credentials, healthz, parse_healthz, require_version

#: The service the Kubeflow Pipelines API server runs behind (``kfp.Client`` reaches it the same way).
KFP_SERVICE = "ml-pipeline:http"
PROBE_JOB = "lumbar-cluster-probe"


@dataclass(frozen=True)
class Requirements:
    """What the pipelines need from the cluster.

    Attributes:
        namespace: Where the pipeline pods run (standalone KFP: ``kubeflow``; multi-user: the profile namespace).
        config_map: The config map every task reads, and ``config_keys`` the keys it reads.
        secrets: ``(secret, its keys)`` pairs the tasks mount.
        gpu: Whether training asks for GPUs (off: the GPU node check is skipped).
        node_selector: ``(label, value)`` the training tasks select.
        toleration: ``(taint key, effect)`` the training tasks tolerate.
        accelerator: The GPU resource name (``nvidia.com/gpu``).
        kfp_url: The KFP API URL; None: through the Kubernetes API server's service proxy.
        kfp_namespace: The namespace of the KFP API service (for the proxy).
    """

    namespace: str
    config_map: str
    config_keys: tuple[str, ...]
    secrets: tuple[tuple[str, tuple[str, ...]], ...]
    gpu: bool = True
    node_selector: tuple[str, str] = ("nvidia.com/gpu.present", "true")
    toleration: tuple[str, str] = ("nvidia.com/gpu", "NoSchedule")
    accelerator: str = "nvidia.com/gpu"
    kfp_url: str | None = None
    kfp_namespace: str = "kubeflow"

    def __post_init__(self) -> None:
        if not self.namespace:
            raise InputError("namespace must not be empty")


@dataclass(frozen=True)
class Check:
    """One check's outcome: ``fix`` says what to do when ``ok`` is false."""

    name: str
    ok: bool
    detail: str
    fix: str = ""


@dataclass
class Probe:
    """The optional in-cluster probe Job: its image and how long to wait for it."""

    image: str
    timeout: float = 120.0
    poll: float = 2.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)


def _status(exc: Exception) -> int:
    return int(getattr(exc, "status", 0) or 0)


def _api_error(what: str, exc: Exception) -> str:
    status = _status(exc)
    if status == 403:
        return f"no permission to read {what} (HTTP 403)"
    if status == 404:
        return f"{what} not found"
    return f"cannot read {what} ({getattr(exc, 'reason', exc)})"


def check_namespace(core: Any, req: Requirements) -> Check:
    """The namespace exists."""
    name = f"namespace {req.namespace}"
    try:
        core.read_namespace(req.namespace)
    except Exception as exc:
        fix = f"kubectl create namespace {req.namespace} (multi-user Kubeflow: create a Profile for it)"
        return Check(
            name, False, _api_error(name, exc), fix if _status(exc) == 404 else "check your kubeconfig's rights"
        )
    return Check(name, True, "exists")


def _keys_check(kind: str, name: str, namespace: str, present: set[str] | None, needed: tuple[str, ...], error: str):
    label = f"{kind} {name}"
    literals = " ".join(f"--from-literal={k}=..." for k in needed)
    create = (
        f"kubectl -n {namespace} create secret generic {name} {literals}"
        if kind == "secret"
        else f"kubectl -n {namespace} create configmap {name} {literals} (or apply k8s/pipeline-namespace)"
    )
    if present is None:
        return Check(label, False, error, create)
    missing = [k for k in needed if k not in present]
    if missing:
        return Check(label, False, f"lacks {', '.join(missing)}", f"add {', '.join(missing)} to {kind} {name}")
    return Check(label, True, f"has {', '.join(needed)}")


def check_config_map(core: Any, req: Requirements) -> Check:
    """The config map exists with every key the tasks read."""
    try:
        found = core.read_namespaced_config_map(req.config_map, req.namespace)
        keys: set[str] | None = set((found.data or {}).keys()) | set((found.binary_data or {}).keys())
        error = ""
    except Exception as exc:
        keys, error = None, _api_error(f"config map {req.config_map}", exc)
    return _keys_check("config map", req.config_map, req.namespace, keys, req.config_keys, error)


def check_secrets(core: Any, req: Requirements) -> list[Check]:
    """Each secret exists with every key the tasks read (the values are never read out)."""
    checks = []
    for name, needed in req.secrets:
        try:
            found = core.read_namespaced_secret(name, req.namespace)
            keys: set[str] | None = set((found.data or {}).keys()) | set((found.string_data or {}).keys())
            error = ""
        except Exception as exc:
            keys, error = None, _api_error(f"secret {name}", exc)
        checks.append(_keys_check("secret", name, req.namespace, keys, needed, error))
    return checks


def _quantity(value: str | None) -> int:
    try:
        return int(str(value or "0"))
    except ValueError:
        return 0


def check_gpu_nodes(core: Any, req: Requirements) -> Check:
    """A node with the GPU label, allocatable GPUs, and only taints the training tasks tolerate."""
    label, value = req.node_selector
    taint_key, effect = req.toleration
    name = "GPU node"
    try:
        nodes = core.list_node().items
    except Exception as exc:
        return Check(name, False, _api_error("the nodes", exc), "give your account list rights on nodes")
    labelled = [n for n in nodes if (n.metadata.labels or {}).get(label) == value]
    if not labelled:
        return Check(
            name,
            False,
            f"no node labelled {label}={value} ({len(nodes)} nodes)",
            f"kubectl label node NODE {label}={value} (the GPU operator sets it), or compile with "
            "--gpu-node-selector LABEL=VALUE, or --no-gpu",
        )
    usable, reasons = [], []
    for node in labelled:
        gpus = _quantity((node.status.allocatable or {}).get(req.accelerator) if node.status else None)
        blocking = [
            f"{t.key}:{t.effect}"
            for t in (node.spec.taints or [] if node.spec else [])
            if t.effect in ("NoSchedule", "NoExecute") and not (t.key == taint_key and t.effect == effect)
        ]
        if gpus < 1:
            reasons.append(f"{node.metadata.name} has no allocatable {req.accelerator}")
        elif blocking:
            reasons.append(f"{node.metadata.name} has taints the tasks do not tolerate ({', '.join(blocking)})")
        else:
            usable.append(f"{node.metadata.name} ({gpus} GPU)")
    if not usable:
        return Check(
            name,
            False,
            "; ".join(reasons),
            f"install the NVIDIA device plugin (GPU operator) so nodes advertise {req.accelerator}, "
            "or compile with --gpu-toleration KEY:EFFECT matching the node's taint",
        )
    return Check(name, True, ", ".join(usable))


def check_kfp(core: Any, req: Requirements, creds: Credentials | None = None, timeout: float = 10.0) -> Check:
    """The KFP API answers (at ``kfp_url``, else through the service proxy) and is new enough."""
    name = "Kubeflow Pipelines"
    where = req.kfp_url or f"service {KFP_SERVICE} in {req.kfp_namespace}"
    try:
        if req.kfp_url:
            info = healthz(req.kfp_url, (creds or Credentials(None, "none")).token, timeout=timeout)
        else:
            answer = core.connect_get_namespaced_service_proxy_with_path(
                KFP_SERVICE, req.kfp_namespace, "apis/v2beta1/healthz", _preload_content=False, _request_timeout=timeout
            )
            info = parse_healthz(where, answer.data)
        require_version(info)
    except BackendError as exc:
        return Check(name, False, str(exc), "install or upgrade Kubeflow Pipelines (see docs/cluster.md)")
    except Exception as exc:
        return Check(
            name,
            False,
            _api_error(where, exc),
            "install Kubeflow Pipelines, or give --kfp-host URL (e.g. a port-forward)",
        )
    return Check(name, True, f"{info.tag} at {where}" + (" (multi-user)" if info.multi_user else ""))


#: The probe's script: one line per endpoint; any HTTP answer (even 403) means it is reachable.
PROBE_SCRIPT = """
import os, sys, urllib.request, urllib.error
bad = 0
for key, path in (("LUMBAR_S3_ENDPOINT", ""), ("MLFLOW_TRACKING_URI", "/health")):
    url = os.environ.get(key, "")
    if not url:
        print(f"{key} unset"); bad += 1; continue
    try:
        urllib.request.urlopen(url.rstrip("/") + path, timeout=10).close(); print(f"{key} ok")
    except urllib.error.HTTPError as exc:
        print(f"{key} ok (HTTP {exc.code})")
    except Exception as exc:
        print(f"{key} unreachable: {exc}"); bad += 1
sys.exit(1 if bad else 0)
"""


def probe_job(req: Requirements, image: str) -> dict[str, Any]:
    """The probe Job's manifest: the config map's endpoints, checked from a pod in the namespace."""
    env = [
        {"name": k, "valueFrom": {"configMapKeyRef": {"name": req.config_map, "key": k, "optional": True}}}
        for k in ("LUMBAR_S3_ENDPOINT", "MLFLOW_TRACKING_URI")
    ]
    container = {
        "name": "probe",
        "image": image,
        "command": ["python", "-c", PROBE_SCRIPT],
        "env": env,
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"cpu": "200m", "memory": "256Mi"}},
        "securityContext": {"allowPrivilegeEscalation": False, "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}},
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": PROBE_JOB, "namespace": req.namespace, "labels": {"app.kubernetes.io/name": PROBE_JOB}},
        "spec": {
            "backoffLimit": 0,
            "ttlSecondsAfterFinished": 300,
            "template": {
                "metadata": {"labels": {"app.kubernetes.io/name": PROBE_JOB}},
                "spec": {"restartPolicy": "Never", "containers": [container]},
            },
        },
    }


def check_in_cluster(batch: Any, req: Requirements, probe: Probe) -> Check:
    """Run the probe Job and wait for it: the object store and MLflow answer from inside the namespace."""
    name = "endpoints from inside"
    fix = (
        f"check {req.config_map}'s LUMBAR_S3_ENDPOINT and MLFLOW_TRACKING_URI, and that the NetworkPolicy "
        f"lets pods of {req.namespace} reach them (kubectl -n {req.namespace} logs job/{PROBE_JOB})"
    )
    try:
        try:
            batch.delete_namespaced_job(PROBE_JOB, req.namespace, propagation_policy="Background")
        except Exception as exc:
            if _status(exc) != 404:
                raise
        batch.create_namespaced_job(req.namespace, probe_job(req, probe.image))
        waited = 0.0
        while True:
            status = batch.read_namespaced_job_status(PROBE_JOB, req.namespace).status
            if status and (status.succeeded or 0) > 0:
                return Check(name, True, "object store and MLflow answer")
            if status and (status.failed or 0) > 0:
                return Check(name, False, "the probe Job failed", fix)
            if waited >= probe.timeout:
                return Check(name, False, f"the probe Job did not finish in {probe.timeout:.0f} s", fix)
            probe.sleep(probe.poll)
            waited += probe.poll
    except Exception as exc:
        return Check(name, False, _api_error(f"job {PROBE_JOB}", exc), "give your account create rights on jobs")


def run_checks(
    api_client: Any,
    req: Requirements,
    creds: Credentials | None = None,
    probe: Probe | None = None,
    timeout: float = 10.0,
) -> list[Check]:
    """Every check, in order; the namespace's objects are skipped when the namespace is missing."""
    from kubernetes import client

    core = client.CoreV1Api(api_client)
    checks = [check_namespace(core, req)]
    if checks[0].ok:
        checks.append(check_config_map(core, req))
        checks.extend(check_secrets(core, req))
    if req.gpu:
        checks.append(check_gpu_nodes(core, req))
    checks.append(check_kfp(core, req, creds, timeout))
    if probe is not None and checks[0].ok:
        checks.append(check_in_cluster(client.BatchV1Api(api_client), req, probe))
    return checks


def api_client(kubeconfig: str | None = None, context: str | None = None) -> Any:
    """A ``kubernetes`` API client: the given kubeconfig, else in-cluster, else the default kubeconfig.

    Raises:
        InputError: When no configuration can be loaded.
    """
    from kubernetes import client, config

    configuration = client.Configuration()
    try:
        if kubeconfig is None:
            try:
                config.load_incluster_config(client_configuration=configuration)
                return client.ApiClient(configuration)
            except config.ConfigException:
                pass
        config.load_kube_config(config_file=kubeconfig, context=context, client_configuration=configuration)
    except (config.ConfigException, OSError, TypeError, ValueError) as exc:
        raise InputError(
            f"cannot load a Kubernetes configuration ({exc}); give --kubeconfig or set KUBECONFIG"
        ) from None
    return client.ApiClient(configuration)


def as_json(checks: list[Check]) -> str:
    """The checks as JSON (for scripts)."""
    return json.dumps([c.__dict__ for c in checks], indent=2)
