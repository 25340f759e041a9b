"""``lumbar services``: local S3 and MLflow servers on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lumbar.cli._common import clear_errors

app = typer.Typer(help="Local S3 (SeaweedFS) and MLflow servers on 127.0.0.1.", no_args_is_help=True)

_STATE = Annotated[Path | None, typer.Option("--state-dir", help="State folder (default: <data dir>/services).")]


def _services(state_dir: Path | None, s3_port: int = 8333, mlflow_port: int = 5000):  # type: ignore[no-untyped-def]
    from lumbar.paths import data_dir
    from lumbar.services import LocalServices, ServicesConfig

    return LocalServices(ServicesConfig(state_dir or data_dir() / "services", s3_port=s3_port, mlflow_port=mlflow_port))


@app.command("up")
def services_up(
    state_dir: _STATE = None,
    s3_port: Annotated[int, typer.Option(help="S3 port (0: a free one; kept after the first start).")] = 8333,
    mlflow_port: Annotated[int, typer.Option(help="MLflow port (0: a free one; kept after the first start).")] = 5000,
) -> None:
    """Start a local S3 endpoint (credentials enforced) and an MLflow server, on 127.0.0.1 only."""
    with clear_errors():
        services = _services(state_dir, s3_port, mlflow_port)
        env = services.up()
    typer.echo(f"S3      {env['LUMBAR_S3_ENDPOINT']}  (SeaweedFS on loopback only; not a secured deployment)")
    typer.echo(f"MLflow  {env['MLFLOW_TRACKING_URI']}  (artifacts proxied to s3://mlflow/)")
    typer.echo(f"to use them: source {services.env_file}")


@app.command("down")
def services_down(state_dir: _STATE = None) -> None:
    """Stop the local servers started from this state folder (and nothing else)."""
    with clear_errors():
        stopped = _services(state_dir).down()
    typer.echo(f"stopped {', '.join(stopped)}" if stopped else "nothing was running")


@app.command("status")
def services_status(state_dir: _STATE = None) -> None:
    """Show whether the local servers run, their PIDs and URLs (exit code 3 when one is down)."""
    with clear_errors():
        status = _services(state_dir).status()
    for name, info in status.items():
        state = f"running (pid {info['pid']})" if info["running"] else "stopped"
        typer.echo(f"{name:7} {state:22} {info['url'] or ''}")
    if not all(info["running"] for info in status.values()):
        raise typer.Exit(3)
