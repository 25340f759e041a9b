"""Pipeline ``procedure3``: Dataset B -> self-supervised pretraining -> transfer to Dataset C (Tables 13-14)."""

from dataclasses import dataclass

from kfp import dsl
from kfp.dsl.pipeline_channel import PipelineChannel

from components.build_dataset_b import build_dataset_b
from components.pretrain_ssl import pretrain_ssl
from lumbar.procedures import PROCEDURES
from pipelines.settings import ClusterSettings
from pipelines.wiring import Number, Text, Training, Transfer, pinned_dataset, transfer_from_pretrained

PROCEDURE = "procedure3"


@dataclass(frozen=True)
class SSLPretraining:
    """Procedure 3's own parameters: Dataset B's sources and shards, SimCLR's epochs and steps (0: the profile's)."""

    unlabelled_sources: Text
    shard_image_size: Number
    shard_fit: Text
    epochs: Number
    steps: Number


def wire(
    settings: ClusterSettings,
    *,
    pretraining: SSLPretraining,
    transfer: Transfer,
) -> dsl.PipelineTask:
    """Add procedure 3's tasks: its pretraining data, then :func:`~pipelines.wiring.transfer_from_pretrained`."""
    shards = build_dataset_b(
        sources=pretraining.unlabelled_sources, image_size=pretraining.shard_image_size, fit=pretraining.shard_fit
    )
    settings.data_task(shards, pseudonyms=True)

    def pretrain(item: PipelineChannel) -> dsl.PipelineTask:
        return pretrain_ssl(
            shards=shards.outputs["shards"],
            backbone=item.backbone,
            steps_per_epoch=pretraining.steps,
            **transfer.training.pretrain_args(procedure=PROCEDURE, epochs=pretraining.epochs),
        )

    return transfer_from_pretrained(settings, procedure=PROCEDURE, transfer=transfer, pretrain=pretrain)


def build(settings: ClusterSettings = ClusterSettings()):  # noqa: B008 (frozen, so a safe default)
    """The pipeline, compiled against ``settings``."""

    @dsl.pipeline(
        name="lumbar-procedure3",
        description="Dataset B -> SimCLR pretraining (VGG16, VGG19) -> transfer to Dataset C -> compare.",
    )
    def procedure3(
        dataset_uri: str,
        unlabelled_sources: str,
        backbones: str = PROCEDURES["procedure3"].default_backbones(),
        images: str = "roi",
        profile: str = "quick",
        shard_image_size: int = 224,
        shard_fit: str = "pad",
        pretrain_epochs: int = 0,
        pretrain_steps: int = 0,
        epochs: int = 0,
        image_size: int = 0,
        batch_size: int = 0,
        seed: int = 0,
        data_origin: str = "unknown",
    ):
        training = Training(profile=profile, epochs=epochs, image_size=image_size, batch_size=batch_size, seed=seed)
        pretraining = SSLPretraining(
            unlabelled_sources=unlabelled_sources,
            shard_image_size=shard_image_size,
            shard_fit=shard_fit,
            epochs=pretrain_epochs,
            steps=pretrain_steps,
        )
        dataset = pinned_dataset(settings, dataset_uri)
        transfer = Transfer(
            dataset=dataset, backbones=backbones, images=images, training=training, data_origin=data_origin
        )
        wire(settings, pretraining=pretraining, transfer=transfer)

    return procedure3
