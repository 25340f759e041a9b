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
    profile: str = "",
    target: str = "binary",
    epochs: int = 0,
    image_size: int = 0,
    batch_size: int = 0,
    seed: int = 0,
    procedure: str = "procedure1",
    unfreeze: str = "",
    monitor: str = "",
    class_weights: str = "",
    pretrained: Input[Model] | None = None,
):
    """Train one configuration; ``pretrained`` (a pretraining step's output) replaces ``weights``.

    ``target``: ``binary`` (the paper's), ``disc_state`` or ``pfirrmann``. Numbers at 0 and empty strings
    take the profile's value (an empty ``profile``: the default one; ``unfreeze`` blocks:N | layers:N,
    ``monitor`` val_error | val_loss, ``class_weights`` none | balanced).
    """
    from lumbar.steps.train import train_step

    trained = train_step(
        dataset=dataset.path,
        out=model.path,
        backbone=backbone,
        mode=mode,
        roi=roi,
        weights=pretrained.path if pretrained is not None else weights,
        profile=profile,
        target=target,
        epochs=epochs,
        image_size=image_size,
        batch_size=batch_size,
        seed=seed,
        procedure=procedure,
        unfreeze=unfreeze,
        monitor=monitor,
        class_weights=class_weights,
    )
    model.metadata.update(trained.metadata())
