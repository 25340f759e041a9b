"""``lumbar demo``: the main job end to end on this machine (what `make demo` runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lumbar.cli._common import clear_errors
from lumbar.procedures import PROCEDURES


def demo(
    out: Annotated[Path, typer.Option("--out", help="Demo folder (replaced).")] = Path("data/demo"),
    patients: Annotated[int | None, typer.Option(help="Synthetic patients (default 64).")] = None,
    fractions: Annotated[
        str | None, typer.Option(help="Train,validation,test shares of the patients (default 0.25,0.08,0.67).")
    ] = None,
    backbones: Annotated[
        str | None,
        typer.Option(help=f"Procedure 1's backbones (default {PROCEDURES['procedure1'].default_backbones()})."),
    ] = None,
    pretrain_backbones: Annotated[
        str | None,
        typer.Option(help=f"Procedures 2 and 3's backbones (default {PROCEDURES['procedure2'].default_backbones()})."),
    ] = None,
    image_size: Annotated[int, typer.Option(help="Model input size.")] = 64,
    epochs: Annotated[int | None, typer.Option(help="Transfer epochs (default: the quick profile's).")] = None,
    weights: Annotated[str, typer.Option(help="auto (ImageNet when its files are here) | imagenet | none.")] = "auto",
    services: Annotated[
        bool, typer.Option("--services", help="Use the local S3 and MLflow servers (lumbar services up).")
    ] = False,
    data: Annotated[
        str, typer.Option(help="synthetic (a made-up export) | spider (SPIDER's real lumbar MRI, imported).")
    ] = "synthetic",
    spider: Annotated[
        Path | None, typer.Option(help="SPIDER folder for --data spider (default ../shared/data/spider-lumbar).")
    ] = None,
) -> None:
    """An export (synthetic, or SPIDER's real MRI) -> all procedures locally (quick profile) -> the results report."""
    from launch.demo_runner import DemoConfig, run_demo

    with clear_errors():  # DemoConfig checks every value and raises the one-line InputError
        given = {
            "patients": patients,
            "fractions": fractions,
            "epochs": epochs,
            "backbones": backbones,
            "pretrain_backbones": pretrain_backbones,
        }
        config = DemoConfig(
            out=out,
            image_size=image_size,
            weights=weights,
            services=services,
            data=data,
            spider=spider,
            **{name: value for name, value in given.items() if value is not None},  # else DemoConfig's defaults
        )
        run_demo(config)  # the terminal shows stages, tasks and timings; the rest goes to the demo's log
