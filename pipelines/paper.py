"""Pipeline ``paper``: Dataset C from the export, then procedures 1, 2 and 3 on it, compared with each other."""

from kfp import dsl

from components.build_dataset_c import build_dataset_c
from components.report import report
from lumbar.procedures import PROCEDURES
from pipelines import procedure1, procedure2, procedure3
from pipelines.settings import ClusterSettings
from pipelines.wiring import Training, Transfer


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
        backbones: str = PROCEDURES["procedure1"].default_backbones(),
        pretrain_backbones: str = PROCEDURES["procedure2"].default_backbones(),
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
        training = Training(profile=profile, epochs=epochs, image_size=image_size, batch_size=batch_size, seed=seed)
        imagenet, table1 = procedure1.wire(
            settings,
            dataset=dataset,
            backbones=backbones,
            modes=procedure1.ALL_MODES,
            images=procedure1.ALL_IMAGES,
            weights=weights,
            training=training,
            data_origin=data_origin,
        )
        # procedures 2 and 3: the same backbones and image types, each compared with procedure 1's runs
        transfer = Transfer(
            dataset=dataset,
            backbones=pretrain_backbones,
            images=pretrain_images,
            training=training,
            baseline=imagenet,
            data_origin=data_origin,
        )
        supervised = procedure2.SupervisedPretraining(
            labelled_sources=labelled_sources, mapping_uri=mapping_uri, epochs=pretrain_epochs
        )
        table2 = procedure2.wire(settings, pretraining=supervised, transfer=transfer)
        ssl = procedure3.SSLPretraining(
            unlabelled_sources=unlabelled_sources,
            shard_image_size=shard_image_size,
            shard_fit=shard_fit,
            epochs=pretrain_epochs,
            steps=pretrain_steps,
        )
        table3 = procedure3.wire(settings, pretraining=ssl, transfer=transfer)
        summary = report(
            experiment_prefix="lumbar",
            kfp_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
            data_origin=data_origin,
            mlflow_ui=mlflow_ui,
            dataset=dataset,
        ).after(table1, table2, table3)
        settings.light_task(summary, kind="report")

    return paper
