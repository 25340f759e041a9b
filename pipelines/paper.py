"""Pipeline ``paper``: Dataset C from the export, then procedures 1, 2 and 3 on it, compared with each other."""

from types import SimpleNamespace

from kfp import dsl
from kfp.dsl.pipeline_channel import PipelineChannel

from components.build_dataset_c import build_dataset_c
from components.report import report
from pipelines import procedure1, procedure2, procedure3
from pipelines.parameters import ALL_IMAGES, ALL_MODES, inputs_of, parameters, take
from pipelines.settings import ClusterSettings
from pipelines.wiring import Training, Transfer, pinned_dataset


def build(settings: ClusterSettings = ClusterSettings()):  # noqa: B008 (frozen, so a safe default)
    """The pipeline, compiled against ``settings``."""

    @dsl.pipeline(
        name="lumbar-paper",
        description="DICOM export -> Dataset C -> procedures 1, 2 and 3 -> comparison tables (the whole paper).",
    )
    @parameters(
        "export_uri labelled_sources unlabelled_sources labels_uri publish_to mapping_uri backbones pretrain_backbones"
        " pretrain_images weights profile target shard_image_size shard_fit supervised_epochs ssl_epochs ssl_steps"
        " epochs image_size batch_size seed data_origin fractions mlflow_ui"
    )
    def paper(values: SimpleNamespace) -> None:
        built = build_dataset_c(**inputs_of(build_dataset_c, values))
        settings.data_task(built, pseudonyms=True)
        _procedures(settings, values, built.outputs["dataset"])

    return paper


def build_from_dataset(settings: ClusterSettings = ClusterSettings()):  # noqa: B008 (frozen, so a safe default)
    """``paper`` on a dataset that exists already (an imported public dataset, a published version)."""

    @dsl.pipeline(
        name="lumbar-paper-dataset",
        description="A built or imported dataset (pinned) -> procedures 1, 2 and 3 -> comparison tables and report.",
    )
    @parameters(
        "dataset_uri labelled_sources unlabelled_sources mapping_uri backbones pretrain_backbones pretrain_images"
        " weights profile target shard_image_size shard_fit supervised_epochs ssl_epochs ssl_steps epochs image_size"
        " batch_size seed data_origin mlflow_ui"
    )
    def paper_dataset(values: SimpleNamespace) -> None:
        _procedures(settings, values, pinned_dataset(settings, values.dataset_uri))

    return paper_dataset


def _procedures(settings: ClusterSettings, values: SimpleNamespace, dataset: PipelineChannel) -> None:
    """Procedures 1, 2 and 3 on ``dataset``, each compared with procedure 1, then the report of all three."""
    training = take(Training, values)
    imagenet, table1 = procedure1.wire(
        settings,
        dataset=dataset,
        backbones=values.backbones,
        modes=ALL_MODES,
        images=ALL_IMAGES,
        weights=values.weights,
        training=training,
        data_origin=values.data_origin,
    )
    # procedures 2 and 3: the same backbones and image types, each compared with procedure 1's runs
    transfer = Transfer(
        dataset=dataset,
        backbones=values.pretrain_backbones,
        images=values.pretrain_images,
        training=training,
        baseline=imagenet,
        data_origin=values.data_origin,
    )
    table2 = procedure2.wire(settings, pretraining=take(procedure2.SupervisedPretraining, values), transfer=transfer)
    table3 = procedure3.wire(settings, pretraining=take(procedure3.SSLPretraining, values), transfer=transfer)
    summary = report(
        experiment_prefix="lumbar",
        kfp_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
        data_origin=values.data_origin,
        mlflow_ui=values.mlflow_ui,
        dataset=dataset,
    ).after(table1, table2, table3)
    settings.light_task(summary, kind="report")
