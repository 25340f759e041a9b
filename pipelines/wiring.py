"""Wiring shared by procedures 2 and 3: transfer a pretrained backbone in both modes, then compare."""

from kfp import dsl
from kfp.dsl.pipeline_channel import PipelineChannel

from components.compare import compare
from components.evaluate import evaluate
from components.train import train
from pipelines.settings import ClusterSettings

MODES = ("frozen", "finetune")


def transfer_both_modes(
    settings: ClusterSettings,
    dataset: PipelineChannel,
    item: PipelineChannel,
    pretrained: PipelineChannel,
    procedure: str,
    profile: str,
    epochs: int,
    image_size: int,
    batch_size: int,
    seed: int,
) -> dict[str, dsl.PipelineTask]:
    """Inside a fan-out over ``{backbone, roi}`` items: train frozen and fine-tuned from ``pretrained``, evaluate."""
    scored = {}
    for mode in MODES:
        trained = train(
            dataset=dataset,
            backbone=item.backbone,
            mode=mode,
            roi=item.roi,
            pretrained=pretrained,
            profile=profile,
            epochs=epochs,
            image_size=image_size,
            batch_size=batch_size,
            seed=seed,
            procedure=procedure,
            kfp_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
        ).set_display_name(f"train-{mode}")
        settings.gpu_task(trained)
        scored[mode] = evaluate(model=trained.outputs["model"], dataset=dataset).set_display_name(f"evaluate-{mode}")
        settings.light_task(scored[mode])
    return scored


def compare_both_modes(
    settings: ClusterSettings,
    procedure: str,
    scored: dict[str, dsl.PipelineTask],
    baseline: PipelineChannel | None,
) -> dsl.PipelineTask:
    """After the fan-out: one table of both modes' runs, beside procedure 1's ImageNet runs when given."""
    inputs = {
        "metrics": dsl.Collected(scored["frozen"].outputs["metrics"]),
        "more": dsl.Collected(scored["finetune"].outputs["metrics"]),
    }
    if baseline is not None:
        inputs["baseline"] = dsl.Collected(baseline)
    table = compare(procedure=procedure, **inputs)
    settings.light_task(table, memory="1Gi")
    return table
