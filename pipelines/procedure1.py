"""Pipeline ``procedure1``: transfer from ImageNet, 4 backbones x {frozen, fine-tune} x {full, ROI} (Tables 6-10)."""

from kfp import dsl
from kfp.dsl.pipeline_channel import PipelineChannel

from components.compare import compare
from components.evaluate import evaluate
from components.fetch_dataset import fetch_dataset
from components.gradcam import gradcam
from components.plan import plan
from components.resolve_dataset import resolve_dataset
from components.train import train
from pipelines.settings import ClusterSettings
from pipelines.wiring import Training

ALL_BACKBONES = "vgg16,vgg19,resnet50,mobilenetv2"


def wire(
    settings: ClusterSettings,
    dataset: PipelineChannel,
    backbones: str,
    modes: str,
    images: str,
    weights: str,
    training: Training,
) -> tuple[PipelineChannel, dsl.PipelineTask]:
    """Add procedure 1's tasks on ``dataset``; returns the fanned-out evaluate steps' metrics and the compare task."""
    configs = plan(backbones=backbones, modes=modes, images=images)
    settings.light_task(configs, kind="small", cache=True)
    with dsl.ParallelFor(configs.output, parallelism=settings.parallelism) as item:
        trained = train(
            dataset=dataset,
            backbone=item.backbone,
            mode=item.mode,
            roi=item.roi,
            weights=weights,
            procedure="procedure1",
            kfp_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
            **training.args(),
        )
        settings.gpu_task(trained)
        scored = evaluate(model=trained.outputs["model"], dataset=dataset)
        settings.light_task(scored)
    explained = gradcam(
        models=dsl.Collected(trained.outputs["model"]),
        metrics=dsl.Collected(scored.outputs["metrics"]),
        dataset=dataset,
    )
    settings.light_task(explained, kind="gradcam")
    table = compare(procedure="procedure1", metrics=dsl.Collected(scored.outputs["metrics"]))
    settings.light_task(table, kind="compare")
    return scored.outputs["metrics"], table


def build(settings: ClusterSettings = ClusterSettings()):  # noqa: B008 (frozen, so a safe default)
    """The pipeline, compiled against ``settings``."""

    @dsl.pipeline(name="lumbar-procedure1", description="Dataset C -> transfer from ImageNet -> evaluate -> compare.")
    def procedure1(
        dataset_uri: str,
        backbones: str = ALL_BACKBONES,
        modes: str = "frozen,finetune",
        images: str = "full,roi",
        weights: str = "imagenet",
        profile: str = "quick",
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
        wire(settings, data.outputs["dataset"], backbones, modes, images, weights, training)

    return procedure1
