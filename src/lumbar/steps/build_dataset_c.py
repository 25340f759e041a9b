"""The ``build_dataset_c`` step: Dataset C from a DICOM export, published as a version when a store is given."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from lumbar.errors import InputError
from lumbar.steps.options import StepResult

#: Store root for published datasets when a step is not given one (set by the cluster's config map).
STORE_ENV = "LUMBAR_STORE_URI"


@dataclass(frozen=True)
class DatasetCBuilt(StepResult):
    """Counts of the build, its content version, and where it was published (None: not published)."""

    patients: int
    images: int
    labelled_images: int
    problems: int
    version: str
    published_uri: str | None = None


def parse_fractions(text: str) -> dict[str, tuple[float, ...]]:
    """``"0.75,0.15,0.10"`` as the build's ``fractions`` option (empty: the build's default).

    Raises:
        InputError: When the parts are not numbers.
    """
    if not text:
        return {}
    try:
        return {"fractions": tuple(float(part) for part in text.split(","))}
    except ValueError:
        raise InputError(f"fractions {text!r} must be three numbers, e.g. 0.75,0.15,0.10") from None


def build_dataset_c_step(
    *,
    export_uri: str,
    out: str | Path,
    workers: int,
    labels_uri: str,
    publish_to: str,
    split_by: str,
    seed: int,
    fractions: str,
) -> DatasetCBuilt:
    """Build Dataset C from a DICOM export into ``out``, and publish it as a version when a store is given.

    Args:
        export_uri: The PACS export (folder or ``s3://`` prefix).
        out: The dataset folder to write (a ``Dataset`` artifact's path).
        workers: Decoding processes.
        labels_uri: The grading CSV (default: ``labels.csv`` inside the export).
        publish_to: Store root to publish the version to (default: ``$LUMBAR_STORE_URI``; none: not published).
        split_by: ``patient`` or ``image``.
        seed: Split seed.
        fractions: Train, validation and test shares as ``"0.75,0.15,0.10"`` (empty: the build's default).

    Raises:
        InputError: When nothing usable (no labelled image) was built.
    """
    from lumbar.dataset_c import BuildConfig, build_dataset_c
    from lumbar.storage import stage_file, stage_folder
    from lumbar.versions import file_index, publish_dataset, version_of

    source = stage_folder(export_uri)
    labels = stage_file(labels_uri) if labels_uri else source / "labels.csv"
    config = BuildConfig(
        source=source,
        out=Path(out),
        labels=labels if labels.is_file() else None,
        split_by=split_by,
        seed=seed,
        workers=workers,
        **parse_fractions(fractions),  # type: ignore[arg-type]
    )
    result = build_dataset_c(config)
    if not result.usable:
        raise InputError(f"nothing usable was built from {export_uri} (no labelled images); see {out}/report.json")
    store = publish_to or os.environ.get(STORE_ENV, "")
    return DatasetCBuilt(
        patients=result.patients,
        images=result.images,
        labelled_images=result.labelled_images,
        problems=result.problems,
        version=version_of(file_index(out)),
        published_uri=publish_dataset(out, store, "dataset-c").uri if store else None,
    )
