"""Component: build Dataset C from a DICOM export (and publish it as a version when a store is configured)."""

from kfp import dsl
from kfp.dsl import Dataset, Markdown, Output

from components.images import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def build_dataset_c(
    export_uri: str,
    dataset: Output[Dataset],
    datacard: Output[Markdown],
    labels_uri: str = "",
    publish_to: str = "",
    split_by: str = "patient",
    seed: int = 0,
    workers: int = 2,
    fractions: str = "",
):
    """Select, de-identify, label, crop and split the export's images into a Dataset C folder."""
    import shutil
    from pathlib import Path

    from lumbar.deid import DEFAULT_SECRET_ENV, Pseudonymizer
    from lumbar.steps.build_dataset_c import build_dataset_c_step

    Pseudonymizer.from_env(DEFAULT_SECRET_ENV)  # required here: refuses a missing, placeholder or weak secret
    built = build_dataset_c_step(
        export_uri=export_uri,
        out=dataset.path,
        labels_uri=labels_uri,
        publish_to=publish_to,
        split_by=split_by,
        seed=seed,
        workers=workers,
        fractions=fractions,
    )
    dataset.metadata.update(built.metadata())
    shutil.copyfile(Path(dataset.path) / "datacard.md", datacard.path)
