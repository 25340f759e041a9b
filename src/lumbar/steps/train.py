"""The ``train`` step: one configuration (backbone x mode x image type) trained on Dataset C."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lumbar.backbones import pretrained_backbone, pretraining_tags, weights_source
from lumbar.profiles import DEFAULT_PROFILE
from lumbar.steps.options import PIPELINE_UNSET, StepResult, config_from_profile, tracking_options


@dataclass(frozen=True)
class TrainedModel(StepResult):
    """The trained configuration: its name and settings, its weights' source, the kept epoch, its MLflow run."""

    name: str
    backbone: str
    mode: str
    roi: bool
    weights_source: str
    monitor: str
    best_epoch: int
    best_val_loss: float
    run_id: str


def train_step(
    *,
    dataset: str | Path,
    out: str | Path,
    backbone: str,
    mode: str,
    roi: bool,
    procedure: str,
    weights: str,
    profile: str,
    target: str,
    epochs: int,
    image_size: int,
    batch_size: int,
    seed: int,
    unfreeze: str,
    monitor: str,
    class_weights: str,
) -> TrainedModel:
    """Train one configuration into ``out`` (a ``Model`` artifact's path), tracked under ``lumbar-<procedure>``.

    Args:
        dataset: Dataset C folder.
        out: The model folder to write.
        backbone: Backbone name.
        mode: ``frozen`` or ``finetune``.
        roi: ROI crops instead of full images.
        procedure: ``procedure1`` ... (the MLflow experiment is ``lumbar-<procedure>``, the run is tagged with it;
            the Kubeflow run id comes from ``$LUMBAR_KFP_RUN_ID``).
        weights: ``imagenet``, ``none``, or a pretraining step's output folder.
        profile: ``paper`` or ``quick`` (empty: :data:`lumbar.profiles.DEFAULT_PROFILE`).
        target: ``binary`` (the paper's), ``disc_state`` or ``pfirrmann`` (:data:`lumbar.data.TARGETS`).
        epochs: Epochs (0: the profile's).
        image_size: Input size (0: the profile's).
        batch_size: Batch size (0: the profile's).
        seed: Seed.
        unfreeze: Fine-tune rule ``blocks:N`` / ``layers:N`` (empty: the profile's).
        monitor: Model selection, ``val_error`` or ``val_loss`` (empty: the profile's).
        class_weights: ``none`` or ``balanced`` (empty: the profile's).
    """
    from lumbar.train import TrainConfig, train_model

    if weights not in ("imagenet", "none"):
        weights = pretrained_backbone(weights)
    source = weights_source(weights)
    config = config_from_profile(TrainConfig, profile or DEFAULT_PROFILE, locals(), PIPELINE_UNSET)
    tags = {"lumbar.procedure": procedure, "lumbar.weights_source": source, **pretraining_tags(weights)}
    result = train_model(config, dataset, out, **tracking_options(procedure, tags))
    return TrainedModel(
        name=config.run_name,
        backbone=backbone,
        mode=mode,
        roi=roi,
        weights_source=source,
        monitor=config.monitor,
        best_epoch=result.best_epoch,
        best_val_loss=result.best_val_loss,
        run_id=result.run_id or "",
    )
