"""Where lumbar keeps its own files (the project's data directory)."""

from __future__ import annotations

import os
from collections.abc import Mapping
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
