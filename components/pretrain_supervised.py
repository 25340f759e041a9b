"""Component: pretrain a backbone from scratch on Dataset A (the paper's procedure 2)."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Model, Output

from components.images import TRAIN_IMAGE


@dsl.component(base_image=TRAIN_IMAGE, install_kfp_package=False)
def pretrain_supervised(
    dataset: Input[Dataset],
    backbone: str,
    pretrained: Output[Model],
    procedure: str = "procedure2",
    profile: str = "",
    epochs: int = 0,
    image_size: int = 0,
    batch_size: int = 0,
    seed: int = 0,
):
    """Pretrain a backbone from scratch on Dataset A.

    Numbers left at 0 take the profile's value, an empty ``profile`` the default one; the backbone is saved in
    the format ``train`` reads.
    """
    from lumbar.steps.pretrain import pretrain_step

    done = pretrain_step(
        method="supervised",
        data=dataset.path,
        out=pretrained.path,
        backbone=backbone,
        procedure=procedure,
        profile=profile,
        epochs=epochs,
        image_size=image_size,
        batch_size=batch_size,
        seed=seed,
    )
    pretrained.metadata.update(done.metadata())
