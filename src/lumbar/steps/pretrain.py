"""The ``pretrain_supervised`` and ``pretrain_ssl`` steps: a backbone pretrained for procedures 2 and 3.

Both save the backbone in the folder format ``train`` reads (:func:`lumbar.backbones.pretrained_backbone`) and
log to the procedure's experiment, tagged with the Kubeflow run id.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lumbar.steps.options import PIPELINE_UNSET, StepResult, config_from_profile, profile_options, tracking_options


@dataclass(frozen=True)
class Pretrained(StepResult):
    """The pretrained backbone: its name, how it was pretrained (``supervised`` / ``ssl``), epochs, MLflow run."""

    backbone: str
    source: str
    epochs: int
    run_id: str


def pretrain_supervised_step(
    *,
    dataset: str | Path,
    out: str | Path,
    backbone: str,
    procedure: str,
    kfp_run_id: str = "",
    profile: str = "quick",
    epochs: int = 0,
    image_size: int = 0,
    batch_size: int = 0,
    seed: int = 0,
) -> Pretrained:
    """Pretrain ``backbone`` from scratch on Dataset A; the backbone lands in ``<out>/backbone``.

    Numbers at 0 take the profile's value (:data:`lumbar.pretrain.PRETRAIN_PROFILES`).
    """
    from lumbar.pretrain import pretrain_supervised
    from lumbar.train import TrainConfig

    overrides = profile_options(TrainConfig, locals(), PIPELINE_UNSET)  # backbone and the numbers not left at 0
    result = pretrain_supervised(dataset, out, profile=profile, **overrides, **tracking_options(procedure, kfp_run_id))
    return Pretrained(backbone=backbone, source="supervised", epochs=result.epochs, run_id=result.run_id or "")


def pretrain_ssl_step(
    *,
    shards: str | Path,
    out: str | Path,
    backbone: str,
    procedure: str,
    kfp_run_id: str = "",
    profile: str = "quick",
    epochs: int = 0,
    image_size: int = 0,
    batch_size: int = 0,
    steps_per_epoch: int = 0,
    seed: int = 0,
) -> Pretrained:
    """SimCLR-pretrain ``backbone`` on Dataset B shards; the backbone lands in ``<out>/backbone``.

    Numbers at 0 take the profile's value (:data:`lumbar.pretrain.SSL_PROFILES`).
    """
    from lumbar.pretrain import SSLConfig, pretrain_ssl

    config = config_from_profile(SSLConfig, profile, locals(), PIPELINE_UNSET)
    result = pretrain_ssl(shards, out, config, **tracking_options(procedure, kfp_run_id))
    return Pretrained(backbone=backbone, source="ssl", epochs=result.epochs, run_id=result.run_id or "")
