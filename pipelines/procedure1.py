"""Pipeline ``procedure1``: transfer from ImageNet, 4 backbones x {frozen, fine-tune} x {full, ROI} (Tables 6-10)."""

from types import SimpleNamespace

from kfp import dsl
from kfp.dsl.pipeline_channel import PipelineChannel

from components.compare import compare
from components.gradcam import gradcam
from components.plan import plan
from pipelines.parameters import parameters, take
from pipelines.settings import ClusterSettings
from pipelines.wiring import Text, Training, pinned_dataset, train_and_evaluate

PROCEDURE = "procedure1"


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
    @parameters(
        "dataset_uri backbones modes images weights profile target epochs image_size batch_size seed data_origin"
    )
    def procedure1(values: SimpleNamespace) -> None:
        wire(
            settings,
            dataset=pinned_dataset(settings, values.dataset_uri),
            backbones=values.backbones,
            modes=values.modes,
            images=values.images,
            weights=values.weights,
            training=take(Training, values),
            data_origin=values.data_origin,
        )

    return procedure1
