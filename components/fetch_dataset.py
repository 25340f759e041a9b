"""Component: bring a dataset folder or published version into the pipeline as a Dataset artifact."""

from kfp import dsl
from kfp.dsl import Dataset, Output

from components.images import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def fetch_dataset(uri: str, dataset: Output[Dataset], version: str = ""):
    """Copy the dataset at ``uri`` (folder, ``s3://.../datasets/<name>[/<version>|/latest]``) into ``dataset``.

    ``version`` (from ``resolve_dataset``) is the content hash the copy must have: it makes the step's
    cache key content-addressed, and a folder changed since it was pinned is refused.
    """
    from lumbar.steps.fetch_dataset import fetch_dataset_step

    dataset.metadata.update(fetch_dataset_step(uri=uri, out=dataset.path, version=version).metadata())
