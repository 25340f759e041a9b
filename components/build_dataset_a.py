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
    from lumbar.steps.build_dataset_a import build_dataset_a_step

    built = build_dataset_a_step(
        sources=sources, out=dataset.path, mapping_uri=mapping_uri, seed=seed, max_size=max_size, workers=workers
    )
    dataset.metadata.update(built.metadata())
