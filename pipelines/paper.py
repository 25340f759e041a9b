"""Pipeline ``paper``: Dataset C from the export, then procedures 1, 2 and 3 on it, compared with each other."""

from kfp import dsl

from components.build_dataset_c import build_dataset_c
from components.report import report
from pipelines import procedure1, procedure2, procedure3
from pipelines.settings import ClusterSettings
from pipelines.wiring import Training


def build(settings: ClusterSettings = ClusterSettings()):  # noqa: B008 (frozen, so a safe default)
    """The pipeline, compiled against ``settings``."""

    @dsl.pipeline(
        name="lumbar-paper",
        description="DICOM export -> Dataset C -> procedures 1, 2 and 3 -> comparison tables (the whole paper).",
    )
    def paper(
        export_uri: str,
        labelled_sources: str,
        unlabelled_sources: str,
        labels_uri: str = "",
        publish_to: str = "",
        mapping_uri: str = "",
        backbones: str = procedure1.ALL_BACKBONES,
        pretrain_backbones: str = "vgg16,vgg19",
        pretrain_images: str = "roi",
        weights: str = "imagenet",
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
        fractions: str = "",
        mlflow_ui: str = "http://127.0.0.1:5000",
    ):
        built = build_dataset_c(
            export_uri=export_uri, labels_uri=labels_uri, publish_to=publish_to, seed=seed, fractions=fractions
        )
        settings.data_task(built, pseudonyms=True)
        dataset = built.outputs["dataset"]
        training = Training(profile, epochs, image_size, batch_size, seed)
        every = ("frozen,finetune", "full,roi")
        imagenet, table1 = procedure1.wire(settings, dataset, backbones, *every, weights, training)
        table2 = procedure2.wire(
            settings,
            dataset,
            labelled_sources,
            mapping_uri,
            pretrain_backbones,
            pretrain_images,
            pretrain_epochs,
            training,
            baseline=imagenet,
        )
        table3 = procedure3.wire(
            settings,
            dataset,
            unlabelled_sources,
            pretrain_backbones,
            pretrain_images,
            shard_image_size,
            pretrain_epochs,
            pretrain_steps,
            training,
            baseline=imagenet,
            shard_fit=shard_fit,
        )
        summary = report(
            experiment_prefix="lumbar",
            kfp_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
            data_origin=data_origin,
            mlflow_ui=mlflow_ui,
            dataset=dataset,
        ).after(table1, table2, table3)
        settings.light_task(summary, kind="report")

    return paper
