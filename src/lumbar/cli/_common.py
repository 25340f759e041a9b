"""Helpers shared by the CLI groups."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

import typer

from lumbar.backbones import backbone_names
from lumbar.errors import LumbarError


@contextmanager
def clear_errors() -> Iterator[None]:
    """Turn domain errors into one line on stderr and exit code 2."""
    try:
        yield
    except LumbarError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        raise typer.Exit(130) from None


def show_progress() -> bool:
    """Progress bars only on a terminal."""
    return sys.stderr.isatty()


@contextmanager
def native_stderr_silenced() -> Iterator[None]:
    """Send file descriptor 2 to /dev/null for the duration (C++ libraries write there directly)."""
    import os

    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def load_tensorflow() -> None:
    """Import TensorFlow and Keras without their start-up log lines (the CLI prints one line per error)."""
    with native_stderr_silenced():
        import keras  # noqa: F401
        import tensorflow  # noqa: F401


# options shared by the training and pretraining commands (None keeps the profile's value)
EPOCHS = Annotated[int | None, typer.Option(help="Override the profile's epochs.")]
BATCH_SIZE = Annotated[int | None, typer.Option(help="Override the profile's batch size.")]
IMAGE_SIZE = Annotated[int | None, typer.Option(help="Override the profile's image size.")]
LEARNING_RATE = Annotated[float | None, typer.Option("--lr", help="Override the profile's learning rate.")]
AUGMENT = Annotated[bool, typer.Option("--augment/--no-augment", help="The paper's augmentation.")]
SEED = Annotated[int, typer.Option(help="Seed.")]
RESUME = Annotated[bool, typer.Option("--resume", help="Continue a killed run from its last checkpoint.")]
TRACK = Annotated[bool, typer.Option("--track/--no-track", help="Log to MLflow.")]

#: The choices come from the registry (read when the CLI is built); the training configs check the value.
BACKBONE = Annotated[str, typer.Option(help=" | ".join(backbone_names()))]
