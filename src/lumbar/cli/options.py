"""Typer option declarations shared by the training and pretraining commands, written once.

A value of None keeps the profile's setting.
"""

from __future__ import annotations

from typing import Annotated

import typer

from lumbar.backbones import backbone_names
from lumbar.profiles import PROFILE_NAMES

EPOCHS = Annotated[int | None, typer.Option(help="Override the profile's epochs.")]
BATCH_SIZE = Annotated[int | None, typer.Option(help="Override the profile's batch size.")]
IMAGE_SIZE = Annotated[int | None, typer.Option(help="Override the profile's image size.")]
LEARNING_RATE = Annotated[float | None, typer.Option("--lr", help="Override the profile's learning rate.")]
AUGMENT = Annotated[
    bool | None, typer.Option("--augment/--no-augment", help="The paper's augmentation (default: the profile's).")
]
#: ``--profile``: its choices and default from :mod:`lumbar.profiles`.
PROFILE = Annotated[str, typer.Option(help=f"{' | '.join(PROFILE_NAMES)} (see docs/training.md)")]
SEED = Annotated[int, typer.Option(help="Seed.")]
RESUME = Annotated[bool, typer.Option("--resume", help="Continue a killed run from its last checkpoint.")]
TRACK = Annotated[bool, typer.Option("--track/--no-track", help="Log to MLflow.")]

#: The choices come from the registry (read when the CLI is built); the training configs check the value.
BACKBONE = Annotated[str, typer.Option(help=" | ".join(backbone_names()))]
