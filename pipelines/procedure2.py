"""Pipeline ``procedure2``: Dataset A -> supervised pretraining from scratch -> transfer to Dataset C (Tables 11-12)."""

from kfp import dsl
from kfp.dsl.pipeline_channel import PipelineChannel

from components.build_dataset_a import build_dataset_a
from components.fetch_dataset import fetch_dataset
from components.plan import plan
from components.pretrain_supervised import pretrain_supervised
from components.resolve_dataset import resolve_dataset
from pipelines.settings import ClusterSettings
from pipelines.wiring import Training, compare_both_modes, transfer_both_modes


def wire(
    settings: ClusterSettings,
    dataset: PipelineChannel,
    labelled_sources: str,
    mapping_uri: str,
    backbones: str,
    images: str,
    pretrain_epochs: int,
    training: Training,
    baseline: PipelineChannel | None = None,
) -> dsl.PipelineTask:
    """Add procedure 2's tasks; ``baseline`` is procedure 1's fanned-out metrics; returns the compare task."""
    labelled = build_dataset_a(sources=labelled_sources, mapping_uri=mapping_uri, seed=training.seed)
    settings.data_task(labelled)
    # one item per backbone and image type: the pretrained backbone is shared by both modes below
    configs = plan(backbones=backbones, modes="frozen", images=images)
    settings.light_task(configs, kind="small", cache=True)
    with dsl.ParallelFor(configs.output, parallelism=settings.parallelism) as item:
        pretrained = pretrain_supervised(
            dataset=labelled.outputs["dataset"],
            backbone=item.backbone,
            profile=training.profile,
            epochs=pretrain_epochs,
            image_size=training.image_size,
            batch_size=training.batch_size,
            seed=training.seed,
            experiment="lumbar-procedure2",
            kfp_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
        )
        settings.gpu_task(pretrained)
        scored = transfer_both_modes(settings, dataset, item, pretrained.outputs["pretrained"], "procedure2", training)
    return compare_both_modes(settings, "procedure2", scored, baseline)


def build(settings: ClusterSettings = ClusterSettings()):  # noqa: B008 (frozen, so a safe default)
    """The pipeline, compiled against ``settings``."""

    @dsl.pipeline(
        name="lumbar-procedure2",
        description="Dataset A -> supervised pretraining (VGG16, VGG19) -> transfer to Dataset C -> compare.",
    )
    def procedure2(
        dataset_uri: str,
        labelled_sources: str,
        mapping_uri: str = "",
        backbones: str = "vgg16,vgg19",
        images: str = "roi",
        profile: str = "quick",
        pretrain_epochs: int = 0,
        epochs: int = 0,
        image_size: int = 0,
        batch_size: int = 0,
        seed: int = 0,
    ):
        pinned = resolve_dataset(uri=dataset_uri)  # `latest` -> its version, uncached: the cache sees only versions
        settings.resolve_task(pinned)
        data = fetch_dataset(uri=pinned.outputs["uri"], version=pinned.outputs["version"])
        settings.fetch_task(data)
        training = Training(profile, epochs, image_size, batch_size, seed)
        sources = (labelled_sources, mapping_uri)
        wire(settings, data.outputs["dataset"], *sources, backbones, images, pretrain_epochs, training)

    return procedure2
