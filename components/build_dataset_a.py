"""Component: build Dataset A (labelled MRI collections mapped to normal/abnormal)."""

from kfp import dsl
from kfp.dsl import Dataset, Output

from components.images import BASE_IMAGE


@dsl.component(base_image=BASE_IMAGE, install_kfp_package=False)
def build_dataset_a(
    sources: str,
    dataset: Output[Dataset],
    mapping_uri: str = "",
    seed: int = 0,
    max_size: int = 512,
    workers: int = 2,
):
    """``sources`` is ``NAME=URI,NAME=URI``: collections whose sub-folders are classes."""
    from lumbar.steps import build_dataset_a_step

    dataset.metadata.update(build_dataset_a_step(sources, dataset.path, mapping_uri, seed, max_size, workers))
