"""Component: train one configuration (backbone x mode x image type) on Dataset C."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from components.images import TRAIN_IMAGE


@dsl.component(base_image=TRAIN_IMAGE, install_kfp_package=False)
def train(
    dataset: Input[Dataset],
    backbone: str,
    mode: str,
    roi: bool,
    model: Output[Model],
    weights: str = "imagenet",
    profile: str = "quick",
    epochs: int = 0,
    image_size: int = 0,
    batch_size: int = 0,
    seed: int = 0,
    procedure: str = "procedure1",
    kfp_run_id: str = "",
    pretrained: Input[Model] | None = None,
):
    """``pretrained`` (a pretraining step's output) replaces ``weights``; numbers at 0 take the profile's value."""
    from lumbar.steps import train_step

    source = pretrained.path if pretrained is not None else weights
    info = train_step(
        dataset.path, model.path, backbone, mode, roi, source, profile, epochs, image_size, batch_size, seed,
        procedure, kfp_run_id,
    )  # fmt: skip
    model.metadata.update(info)
