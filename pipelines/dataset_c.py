"""Pipeline ``dataset_c``: a hospital's DICOM export -> Dataset C, versioned in the object store."""

from kfp import dsl

from components.build_dataset_c import build_dataset_c
from pipelines.settings import ClusterSettings


def build(settings: ClusterSettings = ClusterSettings()):  # noqa: B008 (frozen, so a safe default)
    """The pipeline, compiled against ``settings``."""

    @dsl.pipeline(name="lumbar-dataset-c", description="DICOM export -> Dataset C (published as a version).")
    def dataset_c(
        export_uri: str,
        labels_uri: str = "",
        publish_to: str = "",
        split_by: str = "patient",
        seed: int = 0,
        workers: int = 2,
    ):
        task = build_dataset_c(
            export_uri=export_uri,
            labels_uri=labels_uri,
            publish_to=publish_to,
            split_by=split_by,
            seed=seed,
            workers=workers,
        )
        settings.data_task(task, pseudonyms=True)

    return dataset_c
