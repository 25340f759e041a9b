"""``lumbar weights``: Keras' ImageNet weight files for clusters without internet."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lumbar.cli._common import clear_errors

app = typer.Typer(help="ImageNet weights for air-gapped clusters (Keras' files, md5-checked).", no_args_is_help=True)


@app.command("import")
def weights_import(
    folder: Annotated[Path, typer.Argument(help="Folder holding Keras' weight files (e.g. ~/.keras/models).")],
    to: Annotated[str, typer.Option("--to", help="Store URI, e.g. s3://lumbar/keras-weights.")],
) -> None:
    """Check each weight file against Keras' md5 and put it into the store training tasks fetch from."""
    from lumbar.weights import import_weights

    with clear_errors():
        result = import_weights(folder, to)
    for name in result.uploaded:
        typer.echo(f"uploaded {to.rstrip('/')}/{name}")
    for name in result.unchanged:
        typer.echo(f"unchanged {to.rstrip('/')}/{name}")
    for name in result.unverified:
        typer.echo(f"note: Keras publishes no hash for {name}: imported by name (the store checks its SHA-256)")
    for name in result.skipped:
        typer.echo(f"skipped {name} (not a weight file lumbar uses)")
    typer.echo(f"set LUMBAR_WEIGHTS_URI={to} for training tasks (k8s: the lumbar-config ConfigMap)")
