"""The pipelines' parameters, each declared once: its type and default.

Kubeflow reads a pipeline's parameters from its function's signature. Written out, every pipeline would
repeat the same ones (the training numbers, the data origin, ...) with their types and defaults; here a
pipeline names the parameters it takes, in its order (:func:`parameters`), and its body receives their
values as one namespace, from which :func:`take` fills the wiring's dataclasses (``Training`` ...) and
:func:`inputs_of` the inputs of a component the parameters pass straight to.
"""

import inspect
from collections.abc import Callable
from dataclasses import dataclass, fields
from types import SimpleNamespace
from typing import Any, TypeVar

from kfp.dsl.base_component import BaseComponent

from lumbar.backbones import IMAGES, MODES
from lumbar.procedures import PROCEDURES
from lumbar.profiles import DEFAULT_PROFILE, PAPER_IMAGE_SIZE

#: The default of a parameter that a run must give.
REQUIRED = inspect.Parameter.empty
#: Every mode and every image type.
ALL_MODES = ",".join(MODES)
ALL_IMAGES = ",".join(IMAGES)

T = TypeVar("T")


@dataclass(frozen=True)
class Parameter:
    """A pipeline parameter's type (``str`` or ``int``) and default (:data:`REQUIRED`: none)."""

    type: type
    default: Any = REQUIRED


#: Every pipeline parameter (flat primitives; lists are comma-separated, numbers at 0 take the profile's).
PARAMETERS: dict[str, Parameter] = {
    # the data: the hospital's export, Dataset C's version, the pretraining collections
    "export_uri": Parameter(str),
    "dataset_uri": Parameter(str),
    "labelled_sources": Parameter(str),
    "unlabelled_sources": Parameter(str),
    "labels_uri": Parameter(str, ""),
    "publish_to": Parameter(str, ""),
    "mapping_uri": Parameter(str, ""),
    "split_by": Parameter(str, "patient"),
    "fractions": Parameter(str, ""),
    "workers": Parameter(int, 2),
    # what is trained: procedure 1's configurations, and the backbones procedures 2 and 3 pretrain
    "backbones": Parameter(str, PROCEDURES["procedure1"].default_backbones()),
    "modes": Parameter(str, ALL_MODES),
    "images": Parameter(str, ALL_IMAGES),
    "pretrain_backbones": Parameter(str, PROCEDURES["procedure2"].default_backbones()),
    "pretrain_images": Parameter(str, "roi"),
    "weights": Parameter(str, "imagenet"),
    # how: the profile, Dataset B's shards, pretraining, training
    "profile": Parameter(str, DEFAULT_PROFILE),
    # what the classifiers predict: binary (normal/abnormal, the paper's), disc_state, pfirrmann (lumbar.data)
    "target": Parameter(str, "binary"),
    "shard_image_size": Parameter(int, PAPER_IMAGE_SIZE),
    "shard_fit": Parameter(str, "pad"),
    # procedure 2's supervised pretraining epochs; procedure 3's SimCLR epochs and batches per epoch
    "supervised_epochs": Parameter(int, 0),
    "ssl_epochs": Parameter(int, 0),
    "ssl_steps": Parameter(int, 0),
    "epochs": Parameter(int, 0),
    "image_size": Parameter(int, 0),
    "batch_size": Parameter(int, 0),
    "seed": Parameter(int, 0),
    # the comparison tables and the report
    "data_origin": Parameter(str, "unknown"),
    "mlflow_ui": Parameter(str, "http://127.0.0.1:5000"),
}


def parameters(names: str, **defaults: Any) -> Callable[[Callable[[SimpleNamespace], None]], Callable[..., None]]:
    """Decorator: a pipeline body taking the values of ``names`` as one namespace gets them as its signature.

    Args:
        names: The pipeline's parameters, space-separated, in the order the run's form lists them; each
            one of :data:`PARAMETERS`.
        defaults: This pipeline's own default of some of them (procedure 2's backbones ...).

    Returns:
        The decorator; the function it returns is what ``dsl.pipeline`` takes.

    Raises:
        ValueError: For a name not in :data:`PARAMETERS`, or a default of a parameter not taken.
    """
    chosen = names.split()
    unknown = [n for n in chosen if n not in PARAMETERS] + [n for n in defaults if n not in chosen]
    if unknown:
        raise ValueError(f"no pipeline parameter {', '.join(unknown)}; see pipelines.parameters.PARAMETERS")
    signature = inspect.Signature(
        [
            inspect.Parameter(
                name,
                inspect.Parameter.POSITIONAL_OR_KEYWORD,
                annotation=PARAMETERS[name].type,
                default=defaults.get(name, PARAMETERS[name].default),
            )
            for name in chosen
        ]
    )

    def decorate(body: Callable[[SimpleNamespace], None]) -> Callable[..., None]:
        def pipeline(*args: Any, **kwargs: Any) -> None:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            body(SimpleNamespace(**bound.arguments))

        for attribute in ("__module__", "__name__", "__qualname__", "__doc__"):
            setattr(pipeline, attribute, getattr(body, attribute))
        pipeline.__signature__ = signature  # type: ignore[attr-defined]  # what inspect.signature returns
        return pipeline

    return decorate


def take(group: type[T], values: SimpleNamespace) -> T:
    """The dataclass ``group`` of the pipeline parameters named like its fields."""
    return group(**{field.name: getattr(values, field.name) for field in fields(group)})  # type: ignore[arg-type]


def inputs_of(component: BaseComponent, values: SimpleNamespace) -> dict[str, Any]:
    """The pipeline parameters named like ``component``'s inputs, as its keyword arguments (others: its defaults)."""
    return {name: getattr(values, name) for name in component.component_spec.inputs or {} if hasattr(values, name)}
