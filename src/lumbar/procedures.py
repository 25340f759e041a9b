"""The procedure registry: the paper's three experiments, each defined once.

A :class:`Procedure` names its pipeline (by dotted path: this library never imports kfp or the pipelines),
its MLflow experiment, where its backbones' weights come from, the paper's tables it reproduces and the
backbones it trains by default. The launcher's pipeline list, the pipelines' defaults, the steps'
experiments, the report's experiments and the comparison tables derive from :data:`PROCEDURES`.
"""

from __future__ import annotations

from dataclasses import dataclass

from lumbar.backbones import backbone_names
from lumbar.errors import check_choice

#: The MLflow experiments of the procedures are ``<prefix>-<procedure>``.
EXPERIMENT_PREFIX = "lumbar"


def experiment_name(procedure: str, prefix: str = EXPERIMENT_PREFIX) -> str:
    """The experiment of a procedure: ``<prefix>-<procedure>``."""
    return f"{prefix}-{procedure}"


#: The experiments of runs outside a procedure (``lumbar train``, ``lumbar pretrain supervised|ssl``).
TRAIN_EXPERIMENT = experiment_name("train")
PRETRAIN_SUPERVISED_EXPERIMENT = experiment_name("pretrain-supervised")
PRETRAIN_SSL_EXPERIMENT = experiment_name("pretrain-ssl")


@dataclass(frozen=True)
class Procedure:
    """One of the paper's procedures.

    Attributes:
        name: ``procedure1`` ...: the pipeline's, the MLflow experiment's and the report's name for it.
        title: What it does, in a few words.
        pipeline: ``module:function`` building its Kubeflow pipeline (``pipelines.procedure1:build``).
        weights_source: Where the transferred backbones come from: ``imagenet``, ``supervised`` (pretrained
            on Dataset A) or ``ssl`` (pretrained on Dataset B).
        paper_source: The paper's name for that source (``imagenet``, ``dataset_a``, ``dataset_b``), as in
            ``paper_tables.json``.
        metric_tables: The paper's tables of this procedure's metrics.
        rate_table: The paper's table of its Equation 8 improvement rates.
        backbones: The backbones it trains by default; None: every registered backbone.
    """

    name: str
    title: str
    pipeline: str
    weights_source: str
    paper_source: str
    metric_tables: tuple[int, ...]
    rate_table: int
    backbones: tuple[str, ...] | None = None

    @property
    def experiment(self) -> str:
        """Its MLflow experiment (with the default prefix)."""
        return experiment_name(self.name)

    def default_backbones(self) -> str:
        """Its default backbones as the comma-separated list the pipelines and the CLI take."""
        return ",".join(self.backbones or backbone_names())


#: The procedures, in the paper's order.
PROCEDURES: dict[str, Procedure] = {
    p.name: p
    for p in (
        Procedure("procedure1", "transfer from ImageNet", "pipelines.procedure1:build", "imagenet", "imagenet",
                  (6, 7, 8, 9), 10),
        Procedure("procedure2", "supervised pretraining on Dataset A, then transfer", "pipelines.procedure2:build",
                  "supervised", "dataset_a", (11,), 12, backbones=("vgg16", "vgg19")),
        Procedure("procedure3", "self-supervised pretraining on Dataset B, then transfer", "pipelines.procedure3:build",
                  "ssl", "dataset_b", (13,), 14, backbones=("vgg16", "vgg19")),
    )
}  # fmt: skip


def procedure(name: str) -> Procedure:
    """The registered procedure ``name``.

    Raises:
        InputError: Naming the choices, for an unknown procedure.
    """
    check_choice("procedure", name, PROCEDURES)
    return PROCEDURES[name]


def procedure_of_source(weights_source: str) -> Procedure | None:
    """The procedure whose backbones come from ``weights_source`` (``ssl`` -> procedure 3), or None."""
    return next((p for p in PROCEDURES.values() if p.weights_source == weights_source), None)
