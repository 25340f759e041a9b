"""The step of the ``pretrain_supervised`` and ``pretrain_ssl`` components: a backbone for procedures 2 and 3.

One adapter serves both: the components differ only in their data (Dataset A, Dataset B's shards) and in
``method``. Either way the backbone is saved in the folder format ``train`` reads
(:func:`lumbar.backbones.pretrained_backbone`), and the run logs to the procedure's experiment, tagged with the
Kubeflow run id.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lumbar.errors import InputError
from lumbar.steps.options import PIPELINE_UNSET, StepResult, config_from_profile, profile_options, tracking_options

#: Pretraining methods: ``supervised`` from scratch on Dataset A (procedure 2), ``ssl`` SimCLR on Dataset B
#: (procedure 3).
METHODS = ("supervised", "ssl")


@dataclass(frozen=True)
class Pretrained(StepResult):
    """The pretrained backbone: its name, how it was pretrained (``supervised`` / ``ssl``), epochs, MLflow run."""

    backbone: str
    source: str
    epochs: int
    run_id: str


def pretrain_step(
    *,
    method: str,
    data: str | Path,
    out: str | Path,
    backbone: str,
    procedure: str,
    kfp_run_id: str,
    profile: str,
    epochs: int,
    image_size: int,
    batch_size: int,
    seed: int,
    steps_per_epoch: int = 0,
) -> Pretrained:
    """Pretrain ``backbone`` on ``data``; the backbone lands in ``<out>/backbone``.

    Args:
        method: ``supervised`` (``data`` is Dataset A) or ``ssl`` (``data`` is Dataset B's shards).
        data: The dataset folder.
        out: The folder to write (a ``Model`` artifact's path).
        backbone: Backbone name.
        procedure: The procedure (the MLflow experiment is ``lumbar-<procedure>``).
        kfp_run_id: The Kubeflow run id to tag the MLflow run with (empty: none).
        profile: ``paper`` or ``quick``.
        epochs: Epochs (0: the profile's).
        image_size: Input size (0: the profile's).
        batch_size: Batch size (0: the profile's).
        seed: Seed.
        steps_per_epoch: SimCLR batches per epoch (0: the profile's); ``ssl`` only, ``supervised`` takes
            every image.

    Raises:
        InputError: For an unknown method.
    """
    from lumbar.pretrain import SSLConfig, pretrain_ssl, pretrain_supervised
    from lumbar.train import TrainConfig

    options = locals()  # the options named like a config field set it (0: the profile's)
    tracking = tracking_options(procedure, kfp_run_id)
    if method == "supervised":
        overrides = profile_options(TrainConfig, options, PIPELINE_UNSET)
        result = pretrain_supervised(data, out, profile=profile, **overrides, **tracking)
    elif method == "ssl":
        result = pretrain_ssl(data, out, config_from_profile(SSLConfig, profile, options, PIPELINE_UNSET), **tracking)
    else:
        raise InputError(f"unknown pretraining method {method!r}; choose one of {', '.join(METHODS)}")
    return Pretrained(backbone=backbone, source=method, epochs=result.epochs, run_id=result.run_id or "")
