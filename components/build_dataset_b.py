"""Component: build Dataset B (unlabelled MRI frames and images in TFRecord shards)."""

from kfp import dsl
from kfp.dsl import Dataset, Output

from components.images import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def build_dataset_b(
    sources: str,
    shards: Output[Dataset],
    image_size: int = 224,
    shard_mb: float = 100.0,
    workers: int = 2,
    fit: str = "pad",
):
    """``sources``: comma-separated folders or ``s3://`` prefixes of DICOM and images; ``fit``: pad or stretch."""
    from lumbar.deid import DEFAULT_SECRET_ENV, Pseudonymizer
    from lumbar.steps.build_dataset_b import build_dataset_b_step

    Pseudonymizer.from_env(DEFAULT_SECRET_ENV)  # required here: refuses a missing, placeholder or weak secret
    built = build_dataset_b_step(
        sources=sources, out=shards.path, image_size=image_size, shard_mb=shard_mb, workers=workers, fit=fit
    )
    shards.metadata.update(built.metadata())
