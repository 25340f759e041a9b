"""A ``lumbar`` command killed after an epoch, then resumed: what the train and pretrain resume tests share."""

import json
import os
import subprocess
import sys
from pathlib import Path

from .conftest import run_and_kill_when

LUMBAR = str(Path(sys.executable).with_name("lumbar"))


class KilledRun:
    """``lumbar <command> --out <out>``, logging to its own MLflow store, checkpointing in ``<out>/checkpoints``."""

    def __init__(self, command: list[str], out: Path, tmp_path: Path) -> None:
        self.args = [LUMBAR, *command, "--out", str(out)]
        self.env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
        self.state_file = out / "checkpoints" / "state.json"

    def state(self) -> dict:
        """The last checkpoint's state (``epoch``, ``history``, ``run_id``, ``config`` ...)."""
        return json.loads(self.state_file.read_text())

    def kill_after(self, epoch: int) -> int:
        """Start the command, SIGKILL it once it has checkpointed ``epoch`` (or later); the epoch it got to."""
        run_and_kill_when(self.args, self.env, lambda: self.state_file.is_file() and self.state()["epoch"] >= epoch)
        return self.state()["epoch"]

    def resume(self) -> dict | None:
        """Run the command again with ``--resume``, to its end; the final state (None where a finished run
        removes its checkpoints, as training does)."""
        again = subprocess.run([*self.args, "--resume"], env=self.env, capture_output=True, text=True, timeout=600)
        assert again.returncode == 0, again.stderr[-2000:]
        return self.state() if self.state_file.is_file() else None

    def metric_steps(self, run_id: str, metric: str) -> list[int]:
        """The steps of ``metric`` that MLflow holds for run ``run_id``, sorted."""
        from mlflow import MlflowClient

        return sorted(m.step for m in MlflowClient(self.env["MLFLOW_TRACKING_URI"]).get_metric_history(run_id, metric))
