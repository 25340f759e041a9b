"""Wiring the procedures share: their training settings, the pinned input dataset, and transfer learning.

Procedures 2 and 3 differ only in their pretraining data and step; :func:`transfer_from_pretrained` is the
rest of both: pretrain each backbone, train from it frozen and fine-tuned, evaluate, compare.
"""

from collections.abc import Callable
from dataclasses import asdict, dataclass
from types import SimpleNamespace

from kfp import dsl
from kfp.dsl.pipeline_channel import PipelineChannel

from components.compare import compare
from components.evaluate import evaluate
from components.fetch_dataset import fetch_dataset
from components.plan import plan
from components.resolve_dataset import resolve_dataset
from components.train import train
from lumbar.backbones import MODES
from lumbar.procedures import PROCEDURES
from pipelines.parameters import parameters, take
from pipelines.settings import ClusterSettings

#: A pipeline parameter as wiring sees it: a constant, or the channel of a pipeline input.
Text = str | PipelineChannel
Number = int | PipelineChannel


@dataclass(frozen=True)
class Training:
    """The pipeline parameters every training step takes, passed along together (0: the profile's value)."""

    profile: Text
    target: Text
    epochs: Number
    image_size: Number
    batch_size: Number
    seed: Number

    def args(self) -> dict[str, Text | Number]:
        """Keyword arguments of the train component."""
        return asdict(self)

    def pretrain_args(self, *, procedure: str, epochs: Number) -> dict[str, Text | Number]:
        """Keyword arguments both pretraining components take: this training's profile, image size and seed."""
        return {
            "procedure": procedure,
            "profile": self.profile,
            "epochs": epochs,
            "image_size": self.image_size,
            "seed": self.seed,
        }


@dataclass(frozen=True)
class Transfer:
    """Where procedures 2 and 3 transfer their pretrained backbones to, and what they compare with.

    Attributes:
        dataset: Dataset C.
        backbones: The backbones to pretrain (comma-separated).
        images: The image types (comma-separated).
        training: The transfer's training parameters.
        baseline: Procedure 1's fanned-out metrics, compared with (None: not compared).
        data_origin: ``synthetic``, ``real`` or ``unknown``: said in the comparison tables' titles.
    """

    dataset: PipelineChannel
    backbones: Text
    images: Text
    training: Training
    baseline: PipelineChannel | None = None
    data_origin: Text = "unknown"


def pinned_dataset(settings: ClusterSettings, dataset_uri: Text) -> PipelineChannel:
    """Dataset C at ``dataset_uri`` (``latest`` resolved to its version first, uncached), fetched into the run."""
    pinned = resolve_dataset(uri=dataset_uri)  # the cache sees only versions, never a moving pointer
    settings.resolve_task(pinned)
    data = fetch_dataset(uri=pinned.outputs["uri"], version=pinned.outputs["version"])
    settings.fetch_task(data)
    return data.outputs["dataset"]


def pinned_transfer(settings: ClusterSettings, values: SimpleNamespace) -> Transfer:
    """Procedure 2 or 3 on its own: Dataset C at ``dataset_uri`` (pinned), its ``backbones`` and ``images``.

    Args:
        settings: Cluster settings.
        values: The pipeline's parameters (``dataset_uri``, ``backbones``, ``images``, the training's,
            ``data_origin``).

    Returns:
        The transfer, without a baseline.
    """
    return Transfer(
        dataset=pinned_dataset(settings, values.dataset_uri),
        backbones=values.backbones,
        images=values.images,
        training=take(Training, values),
        data_origin=values.data_origin,
    )


def train_and_evaluate(
    settings: ClusterSettings,
    *,
    dataset: PipelineChannel,
    item: PipelineChannel,
    mode: Text,
    procedure: str,
    training: Training,
    weights: Text | None = None,
    pretrained: PipelineChannel | None = None,
) -> tuple[dsl.PipelineTask, dsl.PipelineTask]:
    """Inside a fan-out: train ``item``'s backbone and image type in ``mode``, then evaluate it on ``dataset``.

    Args:
        settings: Cluster settings (training on the GPU nodes).
        dataset: Dataset C.
        item: The fan-out's item (``backbone``, ``roi``).
        mode: ``frozen`` or ``finetune`` (a constant, or the item's ``mode``).
        procedure: The procedure the runs are logged under.
        training: The training parameters.
        weights: The backbone's initial weights (``imagenet``, ...), when ``pretrained`` is None.
        pretrained: A pretraining task's output backbone, which replaces ``weights``.

    Returns:
        The train task and the evaluate task.
    """
    source = {"weights": weights} if pretrained is None else {"pretrained": pretrained}
    trained = train(
        dataset=dataset,
        backbone=item.backbone,
        mode=mode,
        roi=item.roi,
        procedure=procedure,
        **source,
        **training.args(),
    )
    settings.gpu_task(trained)
    scored = evaluate(model=trained.outputs["model"], dataset=dataset)
    settings.light_task(scored)
    return trained, scored


def _transfer_both_modes(
    settings: ClusterSettings,
    *,
    dataset: PipelineChannel,
    item: PipelineChannel,
    pretrained: PipelineChannel,
    procedure: str,
    training: Training,
) -> dict[str, dsl.PipelineTask]:
    """Inside a fan-out over ``{backbone, roi}`` items: train frozen and fine-tuned from ``pretrained``, evaluate."""
    scored = {}
    for mode in MODES:
        trained, scored[mode] = train_and_evaluate(
            settings,
            dataset=dataset,
            item=item,
            mode=mode,
            procedure=procedure,
            training=training,
            pretrained=pretrained,
        )
        trained.set_display_name(f"train-{mode}")
        scored[mode].set_display_name(f"evaluate-{mode}")
    return scored


def transfer_from_pretrained(
    settings: ClusterSettings,
    *,
    procedure: str,
    transfer: Transfer,
    pretrain: Callable[[PipelineChannel], dsl.PipelineTask],
) -> dsl.PipelineTask:
    """Procedures 2 and 3 after their pretraining data: pretrain, transfer in both modes, evaluate, compare.

    Args:
        settings: Cluster settings.
        procedure: ``procedure2`` or ``procedure3``.
        transfer: Dataset C, the backbones and image types, the training, the baseline.
        pretrain: Adds the pretraining task of one ``{backbone, roi}`` item; its output ``pretrained`` is the
            backbone both modes transfer from (so one pretraining serves both).

    Returns:
        The compare task.
    """
    configs = plan(
        backbones=transfer.backbones, modes=MODES[0], images=transfer.images
    )  # one item per backbone and image type
    settings.light_task(configs, kind="small", cache=True)
    with dsl.ParallelFor(configs.output, parallelism=settings.parallelism) as item:
        pretrained = pretrain(item)
        settings.gpu_task(pretrained)
        scored = _transfer_both_modes(
            settings,
            dataset=transfer.dataset,
            item=item,
            pretrained=pretrained.outputs["pretrained"],
            procedure=procedure,
            training=transfer.training,
        )
    inputs = {
        "metrics": dsl.Collected(scored["frozen"].outputs["metrics"]),
        "more": dsl.Collected(scored["finetune"].outputs["metrics"]),
    }
    if transfer.baseline is not None:
        inputs["baseline"] = dsl.Collected(transfer.baseline)
    table = compare(procedure=procedure, data_origin=transfer.data_origin, **inputs)
    settings.light_task(table, kind="compare")
    return table


def pretraining_pipeline(
    settings: ClusterSettings,
    *,
    procedure: str,
    description: str,
    names: str,
    pretraining: type,
    wire: Callable[..., dsl.PipelineTask],
) -> Callable[..., None]:
    """Procedure 2's or 3's pipeline: ``lumbar-<procedure>``, taking ``names``, adding its tasks with ``wire``.

    Args:
        settings: Cluster settings the pipeline is compiled against.
        procedure: ``procedure2`` or ``procedure3`` (its backbones are the procedure registry's default).
        description: The pipeline's description.
        names: Its parameters (:func:`pipelines.parameters.parameters`), in the run form's order.
        pretraining: The dataclass of the procedure's own parameters (filled from those named like its fields).
        wire: The procedure's ``wire(settings, *, pretraining, transfer)``.

    Returns:
        The pipeline function (``dsl.pipeline``), named ``procedure``; its images default to the ROI crops.
    """

    def body(values: SimpleNamespace) -> None:
        wire(settings, pretraining=take(pretraining, values), transfer=pinned_transfer(settings, values))

    body.__name__ = body.__qualname__ = procedure
    with_parameters = parameters(names, backbones=PROCEDURES[procedure].default_backbones(), images="roi")(body)
    return dsl.pipeline(name=f"lumbar-{procedure}", description=description)(with_parameters)
