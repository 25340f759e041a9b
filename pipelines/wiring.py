"""Wiring the procedures share: their training settings, and the transfer of a pretrained backbone in both modes.

Procedures 2 and 3 train frozen and fine-tuned from each pretrained backbone, evaluate, and compare.
"""

from dataclasses import asdict, dataclass
from typing import Any

from kfp import dsl
from kfp.dsl.pipeline_channel import PipelineChannel

from components.compare import compare
from components.evaluate import evaluate
from components.train import train
from pipelines.settings import ClusterSettings

MODES = ("frozen", "finetune")


@dataclass(frozen=True)
class Training:
    """The pipeline parameters every training step takes, passed along together (values or channels)."""

    profile: Any
    epochs: Any
    image_size: Any
    batch_size: Any
    seed: Any

    def args(self) -> dict[str, Any]:
        """Keyword arguments of the train component."""
        return asdict(self)


def transfer_both_modes(
    settings: ClusterSettings,
    dataset: PipelineChannel,
    item: PipelineChannel,
    pretrained: PipelineChannel,
    procedure: str,
    training: Training,
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
            procedure=procedure,
            kfp_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
            **training.args(),
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
    settings.light_task(table, kind="compare")
    return table
