"""The step of the ``pretrain_supervised`` and ``pretrain_ssl`` components: a backbone for procedures 2 and 3.

One adapter serves both: the components differ only in their data (Dataset A, Dataset B's shards) and in
``method``. Either way the backbone is saved in the folder format ``train`` reads
(:func:`lumbar.backbones.pretrained_backbone`), and the run logs to the procedure's experiment, tagged with the
Kubeflow run id.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lumbar.errors import InputError
from lumbar.profiles import DEFAULT_PROFILE
from lumbar.steps.options import PIPELINE_UNSET, StepResult, config_from_profile, profile_options, tracking_options

if TYPE_CHECKING:
    from lumbar.pretrain import PretrainResult

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
        procedure: The procedure (the MLflow experiment is ``lumbar-<procedure>``; the Kubeflow run id comes
            from ``$LUMBAR_KFP_RUN_ID``).
        profile: ``paper`` or ``quick`` (empty: :data:`lumbar.profiles.DEFAULT_PROFILE`).
        epochs: Epochs (0: the profile's).
        image_size: Input size (0: the profile's).
        batch_size: Batch size (0: the profile's).
        seed: Seed.
        steps_per_epoch: SimCLR batches per epoch (0: the profile's); ``ssl`` only, ``supervised`` takes
            every image.

    Raises:
        InputError: For an unknown method.
    """
    options = locals()  # the options named like a config field set it (0: the profile's)
    tracking = tracking_options(procedure)
    result = pretrain_from_options(method, data, out, profile or DEFAULT_PROFILE, options, PIPELINE_UNSET, **tracking)
    return Pretrained(backbone=backbone, source=method, epochs=result.epochs, run_id=result.run_id or "")


def pretrain_from_options(
    method: str,
    data: str | Path,
    out: str | Path,
    profile: str,
    options: Mapping[str, Any],
    unset: tuple[Any, ...],
    **run: Any,
) -> PretrainResult:
    """Pretrain with ``method`` from a command's or step's options; the one path of the CLI and the step.

    Args:
        method: One of :data:`METHODS`.
        data: Dataset A (``supervised``) or Dataset B's shards (``ssl``).
        out: The output folder.
        profile: ``paper`` or ``quick``.
        options: The caller's parameters by name; those named like a field of the method's config set it,
            except the ``unset`` values (the profile's).
        unset: :data:`~lumbar.steps.options.CLI_UNSET` or :data:`~lumbar.steps.options.PIPELINE_UNSET`.
        run: ``resume``, ``track``, ``experiment``, ``tags`` of the pretraining function.

    Raises:
        InputError: For an unknown method, profile or option value.
    """
    from lumbar.pretrain import pretrain_ssl, pretrain_supervised

    config = pretrain_config(method, profile, options, unset)
    pretrain = pretrain_supervised if method == "supervised" else pretrain_ssl
    return pretrain(data, out, config, **run)


def pretrain_config(method: str, profile: str, options: Mapping[str, Any], unset: tuple[Any, ...]) -> Any:
    """The configuration a pretraining runs with, from a command's or step's options (the one rule of both).

    Raises:
        InputError: For an unknown method, profile or option value.
    """
    from lumbar.pretrain import SSLConfig, supervised_config
    from lumbar.train import TrainConfig

    if method == "supervised":
        return supervised_config(profile, **profile_options(TrainConfig, options, unset))
    if method == "ssl":
        return config_from_profile(SSLConfig, profile, options, unset)
    raise InputError(f"unknown pretraining method {method!r}; choose one of {', '.join(METHODS)}")
