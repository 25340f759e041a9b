"""The ``build_dataset_a`` step: Dataset A from labelled collections (class sub-folders)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

from lumbar.errors import InputError
from lumbar.steps.options import StepResult, split_list


@dataclass(frozen=True)
class DatasetABuilt(StepResult):
    """What happened to the collections' files."""

    files: int
    used: int
    duplicates: int
    unmapped: int
    quarantined: int
    extension_mismatches: int


def build_dataset_a_step(
    *, sources: str, out: str | Path, workers: int, mapping_uri: str, seed: int, max_size: int
) -> DatasetABuilt:
    """Build Dataset A from ``NAME=URI,NAME=URI`` collections (class sub-folders) into ``out``.

    Raises:
        InputError: For a malformed ``sources`` entry.
    """
    from lumbar.dataset_a import ClassMapping, LabelledBuildConfig, build_dataset_a
    from lumbar.storage import stage_file, stage_folder

    pairs = []
    for item in split_list(sources, "sources"):
        name, sep, uri = item.partition("=")
        if not sep or not name.strip() or not uri.strip():
            raise InputError(f"source {item!r} must be NAME=URI")
        pairs.append((name.strip(), stage_folder(uri.strip())))
    config = LabelledBuildConfig(
        sources=tuple(pairs),
        out=Path(out),
        mapping=ClassMapping.from_yaml(stage_file(mapping_uri)) if mapping_uri else ClassMapping.paper(),
        seed=seed,
        max_size=max_size,
        workers=workers,
    )
    summary = build_dataset_a(config)
    return DatasetABuilt(**{f.name: int(summary[f.name]) for f in fields(DatasetABuilt)})
