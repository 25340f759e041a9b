"""The ``build_dataset_b`` step: Dataset B, unlabelled MRI frames and images in TFRecord shards."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lumbar.steps.options import StepResult, split_list


@dataclass(frozen=True)
class DatasetBBuilt(StepResult):
    """Images and shards written, files read, and the count of each kind of input."""

    images: int
    shards: int
    files: int
    counts: dict[str, int] = field(default_factory=dict)

    def metadata(self) -> dict[str, Any]:
        """The counts flattened beside the totals."""
        return {"images": self.images, "shards": self.shards, "files": self.files, **self.counts}


def build_dataset_b_step(
    *, sources: str, out: str | Path, workers: int, image_size: int, shard_mb: float, fit: str
) -> DatasetBBuilt:
    """Build Dataset B shards from comma-separated folders or ``s3://`` prefixes into ``out``.

    ``fit`` is ``pad`` or ``stretch`` (for sources of ROI crops, see :class:`lumbar.dataset_b.UnlabelledBuildConfig`).
    """
    from lumbar.dataset_b import UnlabelledBuildConfig, build_dataset_b
    from lumbar.storage import stage_folder

    config = UnlabelledBuildConfig(
        sources=tuple(stage_folder(uri) for uri in split_list(sources, "sources")),
        out=Path(out),
        image_size=image_size,
        shard_mb=shard_mb,
        workers=workers,
        fit=fit,
    )
    summary = build_dataset_b(config)
    return DatasetBBuilt(images=summary.images, shards=summary.shards, files=summary.files, counts=dict(summary.counts))
