"""Component: bring a dataset folder or published version into the pipeline as a Dataset artifact."""

from kfp import dsl
from kfp.dsl import Dataset, Output

from components.images import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def fetch_dataset(uri: str, dataset: Output[Dataset]):
    """Copy the dataset at ``uri`` (folder, ``s3://.../datasets/<name>[/<version>|/latest]``) into ``dataset``."""
    from lumbar.steps import fetch_dataset_step

    dataset.metadata.update(fetch_dataset_step(uri, dataset.path))
