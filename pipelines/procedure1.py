"""Pipeline ``procedure1``: transfer from ImageNet, 4 backbones x {frozen, fine-tune} x {full, ROI} (Tables 6-10)."""

from kfp import dsl
from kfp.dsl.pipeline_channel import PipelineChannel

from components.compare import compare
from components.gradcam import gradcam
from components.plan import plan
from lumbar.backbones import IMAGES, MODES
from lumbar.procedures import PROCEDURES
from pipelines.settings import ClusterSettings
from pipelines.wiring import Text, Training, pinned_dataset, train_and_evaluate

PROCEDURE = "procedure1"
#: Every mode and every image type.
ALL_MODES = ",".join(MODES)
ALL_IMAGES = ",".join(IMAGES)


def wire(
    settings: ClusterSettings,
    *,
    dataset: PipelineChannel,
    backbones: Text,
    modes: Text,
    images: Text,
    weights: Text,
    training: Training,
    data_origin: Text = "unknown",
) -> tuple[PipelineChannel, dsl.PipelineTask]:
    """Add procedure 1's tasks on ``dataset``; returns the fanned-out evaluate steps' metrics and the compare task."""
    configs = plan(backbones=backbones, modes=modes, images=images)
    settings.light_task(configs, kind="small", cache=True)
    with dsl.ParallelFor(configs.output, parallelism=settings.parallelism) as item:
        trained, scored = train_and_evaluate(
            settings,
            dataset=dataset,
            item=item,
            mode=item.mode,
            procedure=PROCEDURE,
            training=training,
            weights=weights,
        )
    explained = gradcam(
        models=dsl.Collected(trained.outputs["model"]),
        metrics=dsl.Collected(scored.outputs["metrics"]),
        dataset=dataset,
    )
    settings.light_task(explained, kind="gradcam")
    table = compare(procedure=PROCEDURE, metrics=dsl.Collected(scored.outputs["metrics"]), data_origin=data_origin)
    settings.light_task(table, kind="compare")
    return scored.outputs["metrics"], table


def build(settings: ClusterSettings = ClusterSettings()):  # noqa: B008 (frozen, so a safe default)
    """The pipeline, compiled against ``settings``."""

    @dsl.pipeline(name="lumbar-procedure1", description="Dataset C -> transfer from ImageNet -> evaluate -> compare.")
    def procedure1(
        dataset_uri: str,
        backbones: str = PROCEDURES["procedure1"].default_backbones(),
        modes: str = ALL_MODES,
        images: str = ALL_IMAGES,
        weights: str = "imagenet",
        profile: str = "quick",
        epochs: int = 0,
        image_size: int = 0,
        batch_size: int = 0,
        seed: int = 0,
        data_origin: str = "unknown",
    ):
        training = Training(profile=profile, epochs=epochs, image_size=image_size, batch_size=batch_size, seed=seed)
        dataset = pinned_dataset(settings, dataset_uri)
        wire(
            settings,
            dataset=dataset,
            backbones=backbones,
            modes=modes,
            images=images,
            weights=weights,
            training=training,
            data_origin=data_origin,
        )

    return procedure1
