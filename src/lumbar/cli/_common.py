"""Helpers shared by the CLI groups."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import typer

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
