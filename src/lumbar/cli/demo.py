"""``lumbar demo``: the main job end to end on this machine (what `make demo` runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lumbar.cli._common import clear_errors


def demo(
    out: Annotated[Path, typer.Option("--out", help="Demo folder (replaced).")] = Path("data/demo"),
    patients: Annotated[int, typer.Option(help="Synthetic patients.")] = 12,
    backbones: Annotated[str, typer.Option(help="Procedure 1's backbones.")] = "vgg16,vgg19,resnet50,mobilenetv2",
    pretrain_backbones: Annotated[str, typer.Option(help="Procedures 2 and 3's backbones.")] = "vgg16,vgg19",
    image_size: Annotated[int, typer.Option(help="Model input size.")] = 64,
    epochs: Annotated[int, typer.Option(help="Transfer epochs.")] = 3,
    weights: Annotated[str, typer.Option(help="auto (ImageNet when its files are here) | imagenet | none.")] = "auto",
    services: Annotated[
        bool, typer.Option("--services", help="Use the local S3 and MLflow servers (lumbar services up).")
    ] = False,
) -> None:
    """Synthetic export -> the `paper` pipeline locally (all procedures, quick profile) -> the results report."""
    import os
    import time

    from lumbar.errors import InputError
    from lumbar.tracking import tracking_uri
    from pipelines.demo import DemoConfig, run_demo

    started = time.perf_counter()
    with clear_errors():
        if patients < 1:
            raise InputError("--patients must be at least 1")
        config = DemoConfig(
            out=out,
            patients=patients,
            backbones=backbones,
            pretrain_backbones=pretrain_backbones,
            image_size=image_size,
            epochs=epochs,
            weights=weights,
            services=services,
        )
        result = run_demo(config, say=typer.echo)
    uri = os.environ.get("MLFLOW_TRACKING_URI") or tracking_uri()
    typer.echo(f"\ndone in {time.perf_counter() - started:.0f} s (procedure 1 weights: {result.weights})")
    typer.echo(f"report:       {result.report}  (open it in a browser; Markdown beside it)")
    typer.echo(f"pipeline run: {result.run_folder}")
    if uri.startswith("sqlite:"):
        typer.echo(f"MLflow UI:    .venv/bin/mlflow ui --backend-store-uri {uri}  -> http://127.0.0.1:5000")
    else:
        typer.echo(f"MLflow UI:    {uri}")
