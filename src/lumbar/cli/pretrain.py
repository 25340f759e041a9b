"""``lumbar pretrain supervised | ssl``: the backbones procedures 2 and 3 transfer from."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from lumbar.backbones import DEFAULT_BACKBONE
from lumbar.cli._common import clear_errors, load_tensorflow
from lumbar.cli.options import (
    AUGMENT,
    BACKBONE,
    BATCH_SIZE,
    EPOCHS,
    IMAGE_SIZE,
    LEARNING_RATE,
    PROFILE,
    RESUME,
    SEED,
    TRACK,
)
from lumbar.profiles import DEFAULT_PROFILE

app = typer.Typer(
    help="Pretrain backbones on Dataset A (supervised) or Dataset B (self-supervised).", no_args_is_help=True
)


@app.command("supervised")
def supervised(
    dataset: Annotated[str, typer.Option("--dataset", help="Dataset A folder or published version URI.")],
    out: Annotated[Path, typer.Option("--out", help="Output folder (classifier/ and backbone/).")],
    backbone: BACKBONE = DEFAULT_BACKBONE,
    profile: PROFILE = DEFAULT_PROFILE,
    epochs: EPOCHS = None,
    batch_size: BATCH_SIZE = None,
    image_size: IMAGE_SIZE = None,
    learning_rate: LEARNING_RATE = None,
    augment: AUGMENT = None,
    seed: SEED = 0,
    resume: RESUME = False,
    track: TRACK = True,
) -> None:
    """Train a backbone from scratch on Dataset A (paper: lr 1e-5, batch 64, 100 epochs) and save it."""
    _pretrain("supervised", dataset, out, locals())


@app.command("ssl")
def ssl(
    shards: Annotated[str, typer.Option("--shards", help="Dataset B folder or s3:// URI.")],
    out: Annotated[Path, typer.Option("--out", help="Output folder (checkpoints/ and backbone/).")],
    backbone: BACKBONE = DEFAULT_BACKBONE,
    profile: PROFILE = DEFAULT_PROFILE,
    epochs: EPOCHS = None,
    steps_per_epoch: Annotated[int | None, typer.Option(help="Batches per epoch (default: all images).")] = None,
    batch_size: BATCH_SIZE = None,
    image_size: IMAGE_SIZE = None,
    learning_rate: LEARNING_RATE = None,
    temperature: Annotated[float | None, typer.Option(help="NT-Xent temperature.")] = None,
    freeze_batchnorm: Annotated[
        bool,
        typer.Option(
            "--freeze-batchnorm/--train-batchnorm",
            help="BatchNormalization layers in inference mode with their initial statistics (default), or trained "
            "on batch statistics (large batches and long runs only: see the README).",
        ),
    ] = True,
    min_crop_area: Annotated[
        float | None, typer.Option(help="Smallest fraction of the image a random view crops (default 0.3).")
    ] = None,
    seed: SEED = 0,
    resume: RESUME = False,
    track: TRACK = True,
) -> None:
    """SimCLR self-supervised pretraining on Dataset B shards; saves the backbone."""
    _pretrain("ssl", shards, out, locals())


def _pretrain(method: str, data: str, out: Path, options: dict[str, Any]) -> None:
    """Run a command's pretraining (its options by name) and say where the backbone went."""
    load_tensorflow()
    from lumbar.steps.options import CLI_UNSET
    from lumbar.steps.pretrain import pretrain_from_options

    with clear_errors():
        result = pretrain_from_options(
            method, data, out, options["profile"], options, CLI_UNSET, resume=options["resume"], track=options["track"]
        )
    how = f"supervised, {result.epochs} epochs"
    if method == "ssl":
        how = f"SimCLR, {result.epochs} epochs, final loss {result.history[-1]['loss']:.4f}"
    typer.echo(
        f"pretrained {options['backbone']} ({how}); backbone in {result.backbone_dir} "
        f"(use: lumbar train --weights {result.backbone_dir})"
    )
