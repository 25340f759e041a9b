"""lumbar's services in containers on a Docker engine, started exactly as ``k8s/base`` deploys them.

The Kubernetes manifests are the one description of how SeaweedFS, PostgreSQL, MLflow and the bucket
Job run. :func:`workloads` renders ``k8s/base`` with ``kubectl kustomize``; :func:`translate` turns one
workload's container into a :class:`ContainerRun`: the same image, command, arguments and environment,
the same user, read-only root, dropped capabilities and no privilege escalation. What exists only in
Kubernetes is translated, each in one place:

* ``secretKeyRef`` values and ``secret`` volumes come from a ``{secret: {key: value}}`` mapping;
* ``fieldRef: status.podIP`` and ``$(VAR)`` in commands and arguments (Kubernetes' own expansion);
* Service names (``PGHOST=postgres``, ``http://seaweedfs:8333``) become the loopback address: the
  containers share the host's network (the engine of ``make engine`` has no bridge);
* ``emptyDir`` volumes become tmpfs mounts owned by the pod's user (as ``fsGroup`` makes them writable
  there), a StatefulSet's volume claims named Docker volumes;
* readiness probes (``httpGet``, ``exec``) are polled until the service is ready.

:class:`ServiceStack` starts the four in dependency order and removes every container and volume it
made on exit. ``tests/k8s/test_containers.py`` checks the translation against the manifests;
``make test-images`` runs pipelines against the stack.
"""

from __future__ import annotations

import json
import os
import re
import secrets as random_secrets
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from lumbar.errors import InputError, LumbarError

ROOT = Path(__file__).resolve().parents[1]
#: The workloads of k8s/base in the order they start (each needs those before it).
STACK = (("StatefulSet", "seaweedfs"), ("Job", "lumbar-bucket"), ("StatefulSet", "postgres"), ("Deployment", "mlflow"))
#: The address every Service name becomes: the containers run on the host's network.
LOOPBACK = "127.0.0.1"
_EXPANSION = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


@dataclass(frozen=True)
class Probe:
    """A readiness check: an HTTP GET of ``path`` on ``port``, or ``command`` run in the container."""

    path: str = ""
    port: int = 0
    command: tuple[str, ...] = ()


@dataclass(frozen=True)
class ContainerRun:
    """One Kubernetes container as ``docker run`` runs it.

    Attributes:
        name: The workload's name.
        image: The image reference.
        entrypoint: The container's ``command`` (empty: the image's entrypoint).
        args: Its ``args``, ``$(VAR)`` expanded.
        env: Its environment, secrets and field references resolved.
        user: ``uid:gid`` from the security contexts (empty: the image's user).
        read_only: A read-only root file system.
        drop_all: Every capability dropped.
        no_new_privileges: No privilege escalation.
        tmpfs: Mount points of ``emptyDir`` volumes.
        volumes: ``(docker volume, mount point)`` of each volume claim.
        files: ``(host folder, mount point)`` of each secret volume, mounted read-only.
        ready: The readiness probe, if any.
        job: A Job: run to completion instead of kept running.
    """

    name: str
    image: str
    entrypoint: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    user: str = ""
    read_only: bool = False
    drop_all: bool = False
    no_new_privileges: bool = False
    tmpfs: tuple[str, ...] = ()
    volumes: tuple[tuple[str, str], ...] = ()
    files: tuple[tuple[str, str], ...] = ()
    ready: Probe | None = None
    job: bool = False

    def docker_args(self, container: str) -> list[str]:
        """``docker run`` arguments (after ``run``) for a container named ``container``.

        The environment is passed by name only (``--env NAME``): values come from the environment of the
        ``docker`` process (:meth:`ServiceStack.start` sets it), so no secret appears on a command line.
        """
        args = ["--name", container, "--network", "host", "--label", "lumbar.stack=1"]
        if self.user:
            args += ["--user", self.user]
        if self.read_only:
            args.append("--read-only")
        if self.drop_all:
            args += ["--cap-drop", "ALL"]
        if self.no_new_privileges:
            args += ["--security-opt", "no-new-privileges"]
        for path in self.tmpfs:  # writable by the pod's user, as an emptyDir with fsGroup is
            owner = ",uid={},gid={}".format(*self.user.split(":")) if self.user else ""
            args += ["--tmpfs", f"{path}:rw,mode=1777{owner}"]
        for volume, path in self.volumes:
            args += ["--mount", f"type=volume,src={volume},dst={path}"]
        for folder, path in self.files:
            args += ["--mount", f"type=bind,src={folder},dst={path},readonly"]
        for name in self.env:
            args += ["--env", name]
        if self.entrypoint:
            args += ["--entrypoint", self.entrypoint[0]]
        return [*args, self.image, *self.entrypoint[1:], *self.args]


def workloads(overlay: str | Path = ROOT / "k8s" / "base") -> list[dict[str, Any]]:
    """The objects of ``overlay`` as ``kubectl kustomize`` renders them.

    Raises:
        LumbarError: When kubectl is missing or the overlay does not render.
    """
    if shutil.which("kubectl") is None:
        raise LumbarError("kubectl is needed to render k8s/ (make kubectl installs Debian's kubernetes-client)")
    import yaml

    result = subprocess.run(["kubectl", "kustomize", str(overlay)], capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        raise LumbarError(f"kubectl kustomize {overlay} failed: {result.stderr.strip().splitlines()[-1:]}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def _localize(variable: str, value: str, services: Iterable[str]) -> str:
    """``value`` with a Service host replaced by :data:`LOOPBACK`.

    A URL's host, or the whole value of a ``*HOST`` variable (``PGHOST=postgres``); other values that
    happen to equal a Service name (a database called ``mlflow``) stay as they are.
    """
    names = set(services)
    if value in names and variable.endswith("HOST"):
        return LOOPBACK
    parts = urlsplit(value)
    if parts.scheme in ("http", "https") and parts.hostname in names:
        port = f":{parts.port}" if parts.port else ""
        return urlunsplit(parts._replace(netloc=f"{LOOPBACK}{port}"))
    return value


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes' expansion of ``$(VAR)`` in a command or argument (``$$`` is a literal ``$``)."""

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return _EXPANSION.sub(one, text)


def _secret(secrets: Mapping[str, Mapping[str, str]], name: str, key: str, workload: str) -> str:
    try:
        return secrets[name][key]
    except KeyError:
        raise InputError(f"{workload} needs key {key} of the Secret {name}, which was not given") from None


def translate(
    workload: Mapping[str, Any],
    *,
    secrets: Mapping[str, Mapping[str, str]],
    services: Iterable[str],
    files: str | Path,
    prefix: str = "lumbar",
) -> ContainerRun:
    """The :class:`ContainerRun` of ``workload``'s (single) container.

    Args:
        workload: A rendered Deployment, StatefulSet or Job.
        secrets: ``{secret: {key: value}}`` for ``secretKeyRef`` values and secret volumes.
        services: The Service names to reach on the loopback address.
        files: A private folder to write the secret volumes' files into.
        prefix: Prefix of the Docker volumes made for volume claims.

    Raises:
        InputError: For a missing secret key or what has no container equivalent here.
    """
    name = workload["metadata"]["name"]
    pod = workload["spec"]["template"]["spec"]
    if len(pod["containers"]) != 1 or pod.get("initContainers"):
        raise InputError(f"{name}: only pods with one container translate to a container run")
    container = pod["containers"][0]
    services = list(services)
    env: dict[str, str] = {}
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = _localize(item["name"], expand(str(item["value"]), env), services)
            continue
        source = item.get("valueFrom", {})
        if "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            env[item["name"]] = _secret(secrets, ref["name"], ref["key"], name)
        elif source.get("fieldRef", {}).get("fieldPath") == "status.podIP":
            env[item["name"]] = LOOPBACK
        else:
            raise InputError(f"{name}: the environment variable {item['name']} has no container equivalent")
    context = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
    user = ""
    if "runAsUser" in context:
        user = f"{context['runAsUser']}:{context.get('runAsGroup', context['runAsUser'])}"
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    claims = {c["metadata"]["name"] for c in workload["spec"].get("volumeClaimTemplates", [])}
    tmpfs, named, mounted = [], [], []
    for mount in container.get("volumeMounts", []):
        volume = volumes.get(mount["name"], {})
        if mount["name"] in claims:
            named.append((f"{prefix}-{name}-{mount['name']}", mount["mountPath"]))
        elif "emptyDir" in volume:
            tmpfs.append(mount["mountPath"])
        elif "secret" in volume:
            folder = Path(files) / name / mount["name"]
            folder.mkdir(parents=True, exist_ok=True)
            secret = volume["secret"]["secretName"]
            for key in secrets.get(secret, {}) or [None]:
                if key is None:
                    raise InputError(f"{name} mounts the Secret {secret}, which was not given")
                (folder / key).write_text(secrets[secret][key], encoding="utf-8")
            mounted.append((str(folder), mount["mountPath"]))
        else:
            raise InputError(f"{name}: the volume {mount['name']} has no container equivalent")
    ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
    return ContainerRun(
        name=name,
        image=container["image"],
        entrypoint=tuple(expand(c, env) for c in container.get("command", [])),
        args=tuple(expand(a, env) for a in container.get("args", [])),
        env=env,
        user=user,
        read_only=bool(context.get("readOnlyRootFilesystem")),
        drop_all="ALL" in context.get("capabilities", {}).get("drop", []),
        no_new_privileges=context.get("allowPrivilegeEscalation") is False,
        tmpfs=tuple(tmpfs),
        volumes=tuple(named),
        files=tuple(mounted),
        ready=_probe(container.get("readinessProbe"), ports),
        job=workload["kind"] == "Job",
    )


def _probe(spec: Mapping[str, Any] | None, ports: Mapping[str | None, int]) -> Probe | None:
    if not spec:
        return None
    if "httpGet" in spec:
        port = spec["httpGet"]["port"]
        return Probe(path=spec["httpGet"].get("path", "/"), port=int(ports.get(port, port)))
    if "exec" in spec:
        return Probe(command=tuple(spec["exec"]["command"]))
    raise InputError(f"unsupported readiness probe {sorted(spec)}")


def generated_secrets() -> dict[str, dict[str, str]]:
    """Fresh random values for every Secret ``k8s/base`` reads (k8s/README.md lists them), for a local stack.

    SeaweedFS's identities are ``k8s/secrets/seaweedfs-s3.example.json`` with each role's new keys, as
    ``k8s/kind/kind.sh`` makes them for a kind cluster.
    """
    roles = ("admin", "datasets", "training", "mlflow")
    keys = {role: (f"lumbar-{role}-{random_secrets.token_hex(4)}", random_secrets.token_urlsafe(24)) for role in roles}
    config = json.loads((ROOT / "k8s" / "secrets" / "seaweedfs-s3.example.json").read_text(encoding="utf-8"))
    for identity in config["identities"]:
        access, secret = keys[identity["name"]]
        identity["credentials"] = [{"accessKey": access, "secretKey": secret}]
    values = {
        f"lumbar-s3-{role}": {"AWS_ACCESS_KEY_ID": access, "AWS_SECRET_ACCESS_KEY": secret}
        for role, (access, secret) in keys.items()
    }
    return {
        **values,
        "lumbar-seaweedfs-s3": {"s3.json": json.dumps(config)},
        "lumbar-postgres": {"POSTGRES_USER": "mlflow", "POSTGRES_PASSWORD": random_secrets.token_urlsafe(24)},
        "lumbar-mlflow-auth": {
            "MLFLOW_AUTH_ADMIN_USERNAME": "lumbar-admin",
            "MLFLOW_AUTH_ADMIN_PASSWORD": random_secrets.token_urlsafe(24),
            "MLFLOW_FLASK_SERVER_SECRET_KEY": random_secrets.token_hex(32),
        },
    }


class ServiceStack:
    """SeaweedFS, its bucket, PostgreSQL and MLflow in containers, as ``k8s/base`` runs them.

    Use as a context manager: entering starts the workloads of :data:`STACK` in order and waits for each
    to be ready (a Job: to succeed); leaving removes every container and volume the stack made, also
    after a failure. :meth:`client_env` is what a pipeline task needs to use the stack.
    """

    def __init__(
        self,
        work: str | Path,
        *,
        secrets: Mapping[str, Mapping[str, str]] | None = None,
        overlay: str | Path = ROOT / "k8s" / "base",
        timeout: float = 180.0,
    ) -> None:
        self.work = Path(work)
        self.secrets = secrets or generated_secrets()
        self.prefix = f"lumbar-stack-{random_secrets.token_hex(3)}"
        self.timeout = timeout
        objects = workloads(overlay)
        services = [o["metadata"]["name"] for o in objects if o["kind"] == "Service"]
        by_key = {(o["kind"], o["metadata"]["name"]): o for o in objects}
        missing = [f"{kind} {name}" for kind, name in STACK if (kind, name) not in by_key]
        if missing:
            raise LumbarError(f"{overlay} has no {', '.join(missing)}")
        self.work.mkdir(parents=True, exist_ok=True)
        self.runs = [
            translate(by_key[key], secrets=self.secrets, services=services, files=self.work, prefix=self.prefix)
            for key in STACK
        ]
        self.started: list[str] = []

    def __enter__(self) -> ServiceStack:
        try:
            for run in self.runs:
                self.start(run)
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _docker(self, *args: str, env: Mapping[str, str] | None = None, timeout: float = 120) -> str:
        result = subprocess.run(
            ["docker", *args], capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}
        )
        if result.returncode != 0:
            raise LumbarError(f"docker {args[0]} failed: {(result.stderr.strip().splitlines() or ['?'])[-1]}")
        return result.stdout

    def start(self, run: ContainerRun) -> None:
        """Start ``run`` and wait until it is ready (a Job: until it succeeded).

        Raises:
            LumbarError: When it exits, fails or is not ready within the timeout (with its last log lines).
        """
        container = f"{self.prefix}-{run.name}"
        for folder, _ in run.files:  # the container's user reads the secret files, nobody else on the host
            _hand_to(folder, run.user)
        self._docker("run", "--detach", *run.docker_args(container), env=run.env)
        self.started.append(container)
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            state = json.loads(self._docker("inspect", "--format", "{{json .State}}", container))
            if run.job and not state["Running"]:
                if state["ExitCode"] == 0:
                    return
                raise LumbarError(f"{run.name} exited with {state['ExitCode']}: {self.logs(container)}")
            if not run.job and not state["Running"]:
                raise LumbarError(f"{run.name} stopped (exit {state['ExitCode']}): {self.logs(container)}")
            if not run.job and self._ready(run, container):
                return
            time.sleep(1)
        raise LumbarError(f"{run.name} was not ready within {self.timeout:.0f} s: {self.logs(container)}")

    def _ready(self, run: ContainerRun, container: str) -> bool:
        probe = run.ready
        if probe is None:
            return True
        if probe.command:
            result = subprocess.run(["docker", "exec", container, *probe.command], capture_output=True, timeout=30)
            return result.returncode == 0
        try:
            with urllib.request.urlopen(f"http://{LOOPBACK}:{probe.port}{probe.path}", timeout=5) as response:
                return response.status < 400
        except OSError:
            return False

    def logs(self, container: str, lines: int = 5) -> str:
        """The last ``lines`` lines of ``container``'s log, on one line."""
        result = subprocess.run(["docker", "logs", "--tail", str(lines), container], capture_output=True, text=True)
        return " | ".join((result.stdout + result.stderr).strip().splitlines()[-lines:])

    def stop(self) -> None:
        """Remove every container and volume this stack made (those already gone are skipped)."""
        for container in reversed(self.started):
            subprocess.run(["docker", "rm", "--force", "--volumes", container], capture_output=True, timeout=120)
        self.started.clear()
        for run in self.runs:
            for volume, _ in run.volumes:
                subprocess.run(["docker", "volume", "rm", "--force", volume], capture_output=True, timeout=60)

    @property
    def mlflow_port(self) -> int:
        """The port MLflow serves on (its readiness probe's)."""
        probe = next(r for r in self.runs if r.name == "mlflow").ready
        return probe.port if probe else 5000

    def client_env(self) -> dict[str, str]:
        """What a pipeline task needs to use the stack: the S3 endpoint and admin keys, MLflow and its admin."""
        s3 = next(r for r in self.runs if r.name == "lumbar-bucket").env
        auth = self.secrets["lumbar-mlflow-auth"]
        return {
            "LUMBAR_S3_ENDPOINT": s3["LUMBAR_S3_ENDPOINT"],
            "AWS_REGION": s3["AWS_REGION"],
            "AWS_ACCESS_KEY_ID": s3["AWS_ACCESS_KEY_ID"],
            "AWS_SECRET_ACCESS_KEY": s3["AWS_SECRET_ACCESS_KEY"],
            "MLFLOW_TRACKING_URI": f"http://{LOOPBACK}:{self.mlflow_port}",
            "MLFLOW_TRACKING_USERNAME": auth["MLFLOW_AUTH_ADMIN_USERNAME"],
            "MLFLOW_TRACKING_PASSWORD": auth["MLFLOW_AUTH_ADMIN_PASSWORD"],
        }


def _hand_to(folder: str, user: str) -> None:
    """Let the container's ``uid:gid`` read ``folder``'s files.

    Owned by it when this process may chown (root), else readable by all in a folder only this user lists.
    """
    path = Path(folder)
    if user and os.geteuid() == 0:
        uid, gid = (int(x) for x in user.split(":"))
        for item in (path, *path.iterdir()):
            os.chown(item, uid, gid)
        path.chmod(0o500)
        for item in path.iterdir():
            item.chmod(0o400)
    else:
        path.chmod(0o711)
        for item in path.iterdir():
            item.chmod(0o444)
