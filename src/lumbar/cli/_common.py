"""Helpers shared by the CLI groups."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import typer

from lumbar.errors import LumbarError

#: Set to 1 to see the traceback of an unexpected failure that a command reports as one line.
DEBUG_ENV = "LUMBAR_DEBUG"


@contextmanager
def clear_errors(unexpected: str | None = None) -> Iterator[None]:
    """Turn domain errors into one line on stderr and exit code 2.

    Args:
        unexpected: For commands that read patient data: what failed (``"the build"``). Any other
            exception is then also one line, naming only its class, with exit code 1: its message and
            traceback could carry a path or header text (a patient's name in a folder name), and the
            terminal is a pipeline's log. ``LUMBAR_DEBUG=1`` shows the traceback instead.
    """
    import os

    try:
        yield
    except LumbarError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        raise typer.Exit(130) from None
    except Exception as exc:
        if unexpected is None or os.environ.get(DEBUG_ENV) == "1":
            raise
        typer.echo(
            f"error: {unexpected} failed unexpectedly ({exc.__class__.__name__}); nothing was written. This is a bug "
            f"in lumbar: {DEBUG_ENV}=1 shows the traceback, which may name input files",
            err=True,
        )
        raise typer.Exit(1) from None


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
