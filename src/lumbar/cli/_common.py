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
