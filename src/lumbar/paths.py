"""Where lumbar keeps its own files (the project's data directory)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

#: Environment variable naming the data directory.
DATA_DIR_ENV = "LUMBAR_DATA_DIR"


def data_dir(environ: Mapping[str, str] | None = None) -> Path:
    """Return the data directory: ``$LUMBAR_DATA_DIR`` when set, else ``./data`` (not created here).

    It holds the default MLflow store (``mlflow.db``, ``mlartifacts/``), the dataset cache
    (``cache/``) and the local services' state (``services/``).
    """
    env = os.environ if environ is None else environ
    return Path(env.get(DATA_DIR_ENV) or "data").expanduser().absolute()


@contextmanager
def replacing_folder(out: Path, marker: str = "manifest.csv") -> Iterator[Path]:
    """Build into a hidden sibling folder that replaces ``out`` only when the block succeeds.

    A crash or an error never leaves a half-written folder where a complete one is expected, and the
    partial folder is removed either way.

    Args:
        out: The folder to (re)place.
        marker: A file that marks ``out`` as a folder lumbar built (it is refused otherwise).

    Raises:
        InputError: If ``out`` exists, is not empty, and has no ``marker``.
    """
    from lumbar.errors import InputError

    out = Path(out)
    if out.exists() and any(out.iterdir()) and not (out / marker).exists():
        raise InputError(
            f"output folder {out} exists and is not a dataset built by lumbar; choose an empty or new folder"
        )
    work = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        yield work
        if out.exists():
            shutil.rmtree(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        work.rename(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
