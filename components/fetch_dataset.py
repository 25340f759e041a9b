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
    from lumbar.errors import InputError
    from lumbar.steps import fetch_dataset_step

    info = fetch_dataset_step(uri, dataset.path)
    if version and info["version"] != version:
        raise InputError(f"{uri} holds dataset version {info['version']}, not the pinned {version}")
    dataset.metadata.update(info)
