"""The ``fetch_dataset`` step: a dataset folder or published version copied into the pipeline."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from lumbar.errors import InputError
from lumbar.steps.options import StepResult


@dataclass(frozen=True)
class DatasetFetched(StepResult):
    """Where the dataset came from and its content version."""

    source_uri: str
    version: str


def fetch_dataset_step(*, uri: str, out: str | Path, version: str) -> DatasetFetched:
    """Copy the dataset at ``uri`` (folder or published version) into ``out``.

    Args:
        uri: A dataset folder or ``s3://.../datasets/<name>[/<version>|/latest]``.
        out: The folder to write (a ``Dataset`` artifact's path).
        version: The content version the copy must have (empty: any).

    Raises:
        InputError: When the copy holds another version than ``version``.
    """
    from lumbar.versions import fetch_dataset, file_index, version_of

    local = fetch_dataset(uri)
    Path(out).mkdir(parents=True, exist_ok=True)
    shutil.copytree(local, out, dirs_exist_ok=True)
    found = version_of(file_index(out))
    if version and found != version:
        raise InputError(f"{uri} holds dataset version {found}, not the pinned {version}")
    return DatasetFetched(source_uri=uri, version=found)
