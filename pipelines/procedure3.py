"""Pipeline ``procedure3``: Dataset B -> self-supervised pretraining -> transfer to Dataset C (Tables 13-14)."""

from kfp import dsl
from kfp.dsl.pipeline_channel import PipelineChannel

from components.build_dataset_b import build_dataset_b
from components.fetch_dataset import fetch_dataset
from components.plan import plan
from components.pretrain_ssl import pretrain_ssl
from components.resolve_dataset import resolve_dataset
from pipelines.settings import ClusterSettings
from pipelines.wiring import Training, compare_both_modes, transfer_both_modes


def wire(
    settings: ClusterSettings,
    dataset: PipelineChannel,
    unlabelled_sources: str,
    backbones: str,
    images: str,
    shard_image_size: int,
    pretrain_epochs: int,
    pretrain_steps: int,
    training: Training,
    baseline: PipelineChannel | None = None,
    shard_fit: str = "pad",
) -> dsl.PipelineTask:
    """Add procedure 3's tasks; ``baseline`` is procedure 1's fanned-out metrics; returns the compare task."""
    shards = build_dataset_b(sources=unlabelled_sources, image_size=shard_image_size, fit=shard_fit)
    settings.data_task(shards, pseudonyms=True)
    # one item per backbone and image type: the pretrained backbone is shared by both modes below
    configs = plan(backbones=backbones, modes="frozen", images=images)
    settings.light_task(configs, kind="small", cache=True)
    with dsl.ParallelFor(configs.output, parallelism=settings.parallelism) as item:
        pretrained = pretrain_ssl(
            shards=shards.outputs["shards"],
            backbone=item.backbone,
            profile=training.profile,
            epochs=pretrain_epochs,
            image_size=training.image_size,
            steps_per_epoch=pretrain_steps,
            seed=training.seed,
            experiment="lumbar-procedure3",
            kfp_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
        )
        settings.gpu_task(pretrained)
        scored = transfer_both_modes(settings, dataset, item, pretrained.outputs["pretrained"], "procedure3", training)
    return compare_both_modes(settings, "procedure3", scored, baseline)


def build(settings: ClusterSettings = ClusterSettings()):  # noqa: B008 (frozen, so a safe default)
    """The pipeline, compiled against ``settings``."""

    @dsl.pipeline(
        name="lumbar-procedure3",
        description="Dataset B -> SimCLR pretraining (VGG16, VGG19) -> transfer to Dataset C -> compare.",
    )
    def procedure3(
        dataset_uri: str,
        unlabelled_sources: str,
        backbones: str = "vgg16,vgg19",
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
    ):
        pinned = resolve_dataset(uri=dataset_uri)  # `latest` -> its version, uncached: the cache sees only versions
        settings.resolve_task(pinned)
        data = fetch_dataset(uri=pinned.outputs["uri"], version=pinned.outputs["version"])
        settings.fetch_task(data)
        training = Training(profile, epochs, image_size, batch_size, seed)
        wire(
            settings,
            data.outputs["dataset"],
            unlabelled_sources,
            backbones,
            images,
            shard_image_size,
            pretrain_epochs,
            pretrain_steps,
            training,
            shard_fit=shard_fit,
        )

    return procedure3
