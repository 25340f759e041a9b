"""``lumbar report``: the paper's tables, plots and the paper's own numbers, from the tracked runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lumbar.cli._common import clear_errors, load_tensorflow


def report(
    out: Annotated[Path, typer.Option("--out", help="Folder for report.html, report.md and plots/.")],
    experiment_prefix: Annotated[
        str, typer.Option(help="Experiments are <prefix>-procedure1, -procedure2, -procedure3.")
    ] = "lumbar",
    kfp_run_id: Annotated[
        str | None, typer.Option(help="Report this Kubeflow run (default: each procedure's latest).")
    ] = None,
    tracking_uri: Annotated[
        str | None, typer.Option(help="MLflow tracking URI (default: MLFLOW_TRACKING_URI or the local store).")
    ] = None,
    mlflow_ui: Annotated[str, typer.Option(help="Base URL of the MLflow UI the links point to.")] = (
        "http://127.0.0.1:5000"
    ),
    data_origin: Annotated[str, typer.Option(help="synthetic | real | unknown (stated first).")] = "unknown",
    dataset: Annotated[
        str | None, typer.Option(help="Dataset C folder or version URI, for the Grad-CAM panels.")
    ] = None,
) -> None:
    """Write the results report (HTML and Markdown) of the three procedures' tracked runs."""
    load_tensorflow()
    from lumbar.report import ReportConfig, build_report
    from lumbar.steps.options import config_from_options

    with clear_errors():
        config = config_from_options(ReportConfig, locals())
        result = build_report(config)
    counts = ", ".join(f"{p}: {len(r)} runs" for p, r in result.runs.items())
    typer.echo(f"report written: {result.html} and {result.markdown} ({counts})")
