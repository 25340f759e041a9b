"""Pipeline ``dataset_c``: a hospital's DICOM export -> Dataset C, versioned in the object store."""

from types import SimpleNamespace

from kfp import dsl

from components.build_dataset_c import build_dataset_c
from pipelines.parameters import inputs_of, parameters
from pipelines.settings import ClusterSettings


def build(settings: ClusterSettings = ClusterSettings()):  # noqa: B008 (frozen, so a safe default)
    """The pipeline, compiled against ``settings``."""

    @dsl.pipeline(name="lumbar-dataset-c", description="DICOM export -> Dataset C (published as a version).")
    @parameters("export_uri labels_uri publish_to split_by seed workers")
    def dataset_c(values: SimpleNamespace) -> None:
        task = build_dataset_c(**inputs_of(build_dataset_c, values))
        settings.data_task(task, pseudonyms=True)

    return dataset_c
