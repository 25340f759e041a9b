"""`lumbar services up|status|down` as a user runs them."""

import os
import stat
import subprocess
import sys
from pathlib import Path

import psutil

LUMBAR = str(Path(sys.executable).with_name("lumbar"))


def _cli(*args):
    return subprocess.run([LUMBAR, *map(str, args)], capture_output=True, text=True, timeout=180, env=os.environ)


def test_up_status_down_and_only_our_processes(tmp_path):
    state = tmp_path / "services"
    up = _cli("services", "up", "--state-dir", state, "--s3-port", 0, "--mlflow-port", 0)
    try:
        assert up.returncode == 0, up.stderr + (state / "weed.log").read_text(errors="replace")[-2000:]
        assert "127.0.0.1" in up.stdout and "source" in up.stdout
        env_file = state / "services.env"
        assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
        assert stat.S_IMODE((state / "s3.json").stat().st_mode) == 0o600
        env = dict(line.removeprefix("export ").split("=", 1) for line in env_file.read_text().splitlines())
        assert env["AWS_SECRET_ACCESS_KEY"] not in up.stdout + up.stderr
        status = _cli("services", "status", "--state-dir", state)
        assert status.returncode == 0 and status.stdout.count("running") == 2
        # every listening socket of SeaweedFS and MLflow is on loopback
        listening = []
        for name in ("weed", "mlflow"):
            leader = psutil.Process(int((state / f"{name}.pid").read_text()))
            for proc in [leader, *leader.children(recursive=True)]:
                listening += [c.laddr.ip for c in proc.net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN]
        assert len(listening) >= 5 and set(listening) == {"127.0.0.1"}
    finally:
        # a foreign process behind a stale PID file must survive `down`
        stranger = subprocess.Popen(["sleep", "60"])
        real_mlflow_pid = (state / "mlflow.pid").read_text()
        down = _cli("services", "down", "--state-dir", state)
        (state / "mlflow.pid").write_text(str(stranger.pid))
        again = _cli("services", "down", "--state-dir", state)
        alive = stranger.poll() is None
        stranger.kill()
    assert down.returncode == 0 and "mlflow" in down.stdout and "weed" in down.stdout
    assert again.stdout.strip() == "nothing was running" and alive
    assert not Path(f"/proc/{real_mlflow_pid}").exists() or "mlflow" not in Path(
        f"/proc/{real_mlflow_pid}/cmdline"
    ).read_text(errors="replace")
    status = _cli("services", "status", "--state-dir", state)
    assert status.returncode == 3 and status.stdout.count("stopped") == 2
