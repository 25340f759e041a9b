"""Pipeline ``procedure2``: Dataset A -> supervised pretraining from scratch -> transfer to Dataset C (Tables 11-12)."""

from dataclasses import dataclass

from kfp import dsl
from kfp.dsl.pipeline_channel import PipelineChannel

from components.build_dataset_a import build_dataset_a
from components.pretrain_supervised import pretrain_supervised
from pipelines.settings import ClusterSettings
from pipelines.wiring import Number, Text, Transfer, pretraining_pipeline, transfer_from_pretrained

PROCEDURE = "procedure2"


@dataclass(frozen=True)
class SupervisedPretraining:
    """Procedure 2's own parameters: Dataset A's collections and class mapping, the epochs (0: the profile's)."""

    labelled_sources: Text
    mapping_uri: Text
    supervised_epochs: Number


def wire(
    settings: ClusterSettings,
    *,
    pretraining: SupervisedPretraining,
    transfer: Transfer,
) -> dsl.PipelineTask:
    """Add procedure 2's tasks: its pretraining data, then :func:`~pipelines.wiring.transfer_from_pretrained`."""
    labelled = build_dataset_a(
        sources=pretraining.labelled_sources, mapping_uri=pretraining.mapping_uri, seed=transfer.training.seed
    )
    settings.data_task(labelled)

    def pretrain(item: PipelineChannel) -> dsl.PipelineTask:
        return pretrain_supervised(
            dataset=labelled.outputs["dataset"],
            backbone=item.backbone,
            batch_size=transfer.training.batch_size,
            **transfer.training.pretrain_args(procedure=PROCEDURE, epochs=pretraining.supervised_epochs),
        )

    return transfer_from_pretrained(settings, procedure=PROCEDURE, transfer=transfer, pretrain=pretrain)


def build(settings: ClusterSettings = ClusterSettings()):  # noqa: B008 (frozen, so a safe default)
    """The pipeline, compiled against ``settings``."""
    return pretraining_pipeline(
        settings,
        procedure=PROCEDURE,
        description="Dataset A -> supervised pretraining (VGG16, VGG19) -> transfer to Dataset C -> compare.",
        names="dataset_uri labelled_sources mapping_uri backbones images profile target supervised_epochs epochs"
        " image_size batch_size seed data_origin",
        pretraining=SupervisedPretraining,
        wire=wire,
    )
