"""``lumbar demo``: the main job end to end on this machine (what `make demo` runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lumbar.cli._common import clear_errors
from lumbar.procedures import PROCEDURES
from lumbar.profiles import QUICK_IMAGE_SIZE


def _defaults(name: str) -> str:
    """A setting's default for each kind of data, for the help (``synthetic 2; spider 8``)."""
    from launch.demo_runner import DATA_DEFAULTS

    values = {data: defaults[name] for data, defaults in DATA_DEFAULTS.items()}
    if len(set(values.values())) == 1:
        return str(next(iter(values.values())))
    return "; ".join(f"{data} {value}" for data, value in values.items())


def demo(
    out: Annotated[Path, typer.Option("--out", help="Demo folder (replaced).")] = Path("data/demo"),
    patients: Annotated[int | None, typer.Option(help="Synthetic patients (default 64).")] = None,
    fractions: Annotated[
        str | None,
        typer.Option(help=f"Train,validation,test shares of the patients (default {_defaults('fractions')})."),
    ] = None,
    backbones: Annotated[
        str | None,
        typer.Option(help=f"Procedure 1's backbones (default {PROCEDURES['procedure1'].default_backbones()})."),
    ] = None,
    pretrain_backbones: Annotated[
        str | None,
        typer.Option(help=f"Procedures 2 and 3's backbones (default {_defaults('pretrain_backbones')})."),
    ] = None,
    image_size: Annotated[int, typer.Option(help="Model input size.")] = QUICK_IMAGE_SIZE,
    epochs: Annotated[int | None, typer.Option(help="Transfer epochs (default: the quick profile's).")] = None,
    supervised_epochs: Annotated[
        int | None,
        typer.Option(help=f"Procedure 2's pretraining epochs on Dataset A (default {_defaults('supervised_epochs')})."),
    ] = None,
    ssl_epochs: Annotated[
        int | None, typer.Option(help=f"Procedure 3's SimCLR epochs (default {_defaults('ssl_epochs')}).")
    ] = None,
    ssl_steps: Annotated[
        int | None, typer.Option(help=f"Procedure 3's SimCLR batches per epoch (default {_defaults('ssl_steps')}).")
    ] = None,
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
            "supervised_epochs": supervised_epochs,
            "ssl_epochs": ssl_epochs,
            "ssl_steps": ssl_steps,
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
