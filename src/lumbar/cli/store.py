"""``lumbar store``: list, copy and create buckets in object stores."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lumbar.cli._common import clear_errors
from lumbar.errors import LumbarError

app = typer.Typer(help="Object stores: s3://bucket/prefix, file:///path or a folder.", no_args_is_help=True)


def _split(uri: str) -> tuple[str, str]:
    parent, _, name = uri.rstrip("/").rpartition("/")
    if not parent or parent.endswith(":/") or parent == "s3:/":
        raise LumbarError(f"{uri} names a bucket, not an object")
    return parent, name


@app.command("ls")
def store_ls(uri: Annotated[str, typer.Argument(help="Store URI or folder.")]) -> None:
    """List every object under a URI (keys relative to it)."""
    from lumbar.storage import open_store

    with clear_errors():
        for key in open_store(uri).list():
            typer.echo(key)


@app.command("cp")
def store_cp(
    source: Annotated[str, typer.Argument(help="Local file or folder, or an s3:// URI.")],
    destination: Annotated[str, typer.Argument(help="An s3:// URI, or a local file or folder.")],
    create_bucket: Annotated[bool, typer.Option("--create-bucket", help="Create a missing S3 bucket.")] = False,
) -> None:
    """Copy a file or a tree between a local path and a store (hash-checked; unchanged files are skipped)."""
    from lumbar.storage import is_remote, open_store

    with clear_errors():
        if is_remote(source) == is_remote(destination):
            raise LumbarError("store cp copies between a local path and an s3:// URI; one side must be each")
        if not is_remote(source):
            local = Path(source)
            if local.is_dir():
                result = open_store(destination, create_bucket=create_bucket).put_tree(local)
                typer.echo(f"{result.transferred} uploaded, {result.skipped} unchanged")
                return
            if not local.is_file():
                raise LumbarError(f"{local} does not exist")
            parent, key = _split(destination)
            changed = open_store(parent, create_bucket=create_bucket).put_file(local, key)
            typer.echo(f"{'uploaded' if changed else 'unchanged'} {destination}")
            return
        parent, key = _split(source)
        container = open_store(parent)
        if container.exists(key):
            target = Path(destination)
            target = target / key if target.is_dir() else target
            container.get_file(key, target)
            typer.echo(f"downloaded {target}")
            return
        result = open_store(source).get_tree("", destination)
        typer.echo(f"{result.transferred} downloaded, {result.skipped} unchanged")


@app.command("mb")
def store_mb(uri: Annotated[str, typer.Argument(help="s3://bucket")]) -> None:
    """Create a bucket (nothing happens when it exists)."""
    from lumbar.storage import S3Store, open_store

    with clear_errors():
        store = open_store(uri)
        if not isinstance(store, S3Store) or store.prefix:
            raise LumbarError("store mb needs an s3://bucket URI")
        created = store.ensure_bucket()
    typer.echo(f"created {uri}" if created else f"{uri} exists")
