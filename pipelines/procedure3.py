"""Pipeline ``procedure3``: Dataset B -> self-supervised pretraining -> transfer to Dataset C (Tables 13-14)."""

from dataclasses import dataclass

from kfp import dsl
from kfp.dsl.pipeline_channel import PipelineChannel

from components.build_dataset_b import build_dataset_b
from components.pretrain_ssl import pretrain_ssl
from pipelines.settings import ClusterSettings
from pipelines.wiring import Number, Text, Transfer, pretraining_pipeline, transfer_from_pretrained

PROCEDURE = "procedure3"


@dataclass(frozen=True)
class SSLPretraining:
    """Procedure 3's own parameters: Dataset B's sources and shards, SimCLR's epochs and steps (0: the profile's)."""

    unlabelled_sources: Text
    shard_image_size: Number
    shard_fit: Text
    ssl_epochs: Number
    ssl_steps: Number


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
            steps_per_epoch=pretraining.ssl_steps,
            **transfer.training.pretrain_args(procedure=PROCEDURE, epochs=pretraining.ssl_epochs),
        )

    return transfer_from_pretrained(settings, procedure=PROCEDURE, transfer=transfer, pretrain=pretrain)


def build(settings: ClusterSettings = ClusterSettings()):  # noqa: B008 (frozen, so a safe default)
    """The pipeline, compiled against ``settings``."""
    return pretraining_pipeline(
        settings,
        procedure=PROCEDURE,
        description="Dataset B -> SimCLR pretraining (VGG16, VGG19) -> transfer to Dataset C -> compare.",
        names="dataset_uri unlabelled_sources backbones images profile target shard_image_size shard_fit ssl_epochs"
        " ssl_steps epochs image_size batch_size seed data_origin",
        pretraining=SSLPretraining,
        wire=wire,
    )
