"""The backbone registry: everything lumbar knows about a backbone, defined once, and the configuration names.

A :class:`BackboneSpec` holds a backbone's name, display title (the paper's spelling), builder, preprocessing,
feature and Grad-CAM layers, the pattern naming its fine-tune blocks, its smallest input and its ImageNet
weights file. :data:`BACKBONES` keeps them in the paper's order, and every list derives from it: the model
builder (:mod:`lumbar.models`), config validation, the CLI's choices and help, the plan step, procedure 1's
default backbones, the comparison tables' row order and titles. Adding a backbone is one
:func:`register_backbone` call (or one entry below); see the README's "Extending" section.

This module imports no heavy library (builders import Keras in their bodies), so the CLI and the plan step
read the registry without loading Keras. It also holds two small facts shared by several layers: the
name of one configuration (:func:`config_name`) and the folder format of a saved backbone (what
:func:`lumbar.models.save_backbone` writes and :func:`weights_source` reads).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lumbar.errors import InputError, check_choice

#: The backbone a command trains when none is named.
DEFAULT_BACKBONE = "vgg16"
#: Training modes: ``frozen`` trains the head only; ``finetune`` also the backbone's top blocks.
MODES: tuple[str, ...] = ("frozen", "finetune")
#: How the comparison tables name each mode.
MODE_TITLES: dict[str, str] = {"frozen": "frozen backbone (transfer learning)", "finetune": "fine-tuned"}
#: Image types: the full slice or the disc's region of interest.
IMAGES: tuple[str, ...] = ("full", "roi")

#: The saved-backbone folder format (see :func:`lumbar.models.save_backbone`).
BACKBONE_FORMAT = "lumbar-backbone/1"
BACKBONE_WEIGHTS = "backbone.npz"
BACKBONE_META = "backbone.json"

#: MobileNetV2 input sizes Keras publishes ImageNet weights for.
MOBILENET_ROWS = (96, 128, 160, 192, 224)
_NOTOP = "weights_tf_dim_ordering_tf_kernels_notop.h5"


@dataclass(frozen=True)
class BackboneSpec:
    """What lumbar needs to know about one backbone.

    Attributes:
        name: The CLI name (lower case).
        title: The display title, as the paper spells it (``MobileNetV2``).
        build: Builds the backbone without its top: called with Keras applications' keyword arguments
            (``include_top``, ``weights``, ``input_tensor``); imports Keras in its body.
        preprocess: ``caffe`` or ``tf`` (as the backbone's ``preprocess_input``).
        output_layer: The backbone's last layer (its feature map).
        gradcam_layer: The last convolutional layer, for Grad-CAM.
        block_pattern: Regex whose first group names the block of a layer (the unit fine-tuning counts).
        min_size: Smallest input size the architecture accepts.
        imagenet_file: ``image_size -> (file name, URL)`` of the ImageNet weights without top, as Keras
            names them in its cache; None when there are none.
        imagenet_files: Every ImageNet weight file (without top) Keras publishes for it, by name: what
            ``lumbar weights import`` copies for air-gapped clusters (read without importing Keras).
    """

    name: str
    title: str
    build: Callable[..., Any] = field(repr=False)
    preprocess: str
    output_layer: str
    gradcam_layer: str
    block_pattern: str
    min_size: int = 32
    imagenet_file: Callable[[int], tuple[str, str]] | None = field(default=None, repr=False)
    imagenet_files: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.name or self.name != self.name.lower() or "," in self.name:
            raise InputError(f"a backbone name must be lower case without commas, got {self.name!r}")
        if self.preprocess not in ("caffe", "tf"):
            raise InputError(f"backbone {self.name}: preprocess must be caffe or tf, got {self.preprocess!r}")
        if self.min_size < 1:
            raise InputError(f"backbone {self.name}: min_size must be at least 1")


def _vgg16(**kwargs: Any) -> Any:
    import keras

    return keras.applications.VGG16(**kwargs)


def _vgg19(**kwargs: Any) -> Any:
    import keras

    return keras.applications.VGG19(**kwargs)


def _resnet50(**kwargs: Any) -> Any:
    import keras

    return keras.applications.ResNet50(**kwargs)


def _mobilenetv2(**kwargs: Any) -> Any:
    import keras

    return keras.applications.MobileNetV2(alpha=1.0, **kwargs)


def _file(url: str) -> tuple[str, str]:
    return url.rsplit("/", 1)[-1], url


def _vgg16_imagenet(image_size: int) -> tuple[str, str]:
    from keras.src.applications import vgg16

    return _file(vgg16.WEIGHTS_PATH_NO_TOP)


def _vgg19_imagenet(image_size: int) -> tuple[str, str]:
    from keras.src.applications import vgg19

    return _file(vgg19.WEIGHTS_PATH_NO_TOP)


def _resnet50_imagenet(image_size: int) -> tuple[str, str]:
    from keras.src.applications import resnet

    return _file(f"{resnet.BASE_WEIGHTS_PATH}resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5")


def _mobilenetv2_imagenet(image_size: int) -> tuple[str, str]:
    from keras.src.applications import mobilenet_v2

    rows = image_size if image_size in MOBILENET_ROWS else 224
    return _file(f"{mobilenet_v2.BASE_WEIGHT_PATH}mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{rows}_no_top.h5")


#: The backbones, in the paper's order (the order of every list and table).
BACKBONES: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in (
        BackboneSpec("vgg16", "VGG16", _vgg16, "caffe", "block5_pool", "block5_conv3", r"^(block\d)_",
                     imagenet_file=_vgg16_imagenet, imagenet_files=(f"vgg16_{_NOTOP}",)),
        BackboneSpec("vgg19", "VGG19", _vgg19, "caffe", "block5_pool", "block5_conv4", r"^(block\d)_",
                     imagenet_file=_vgg19_imagenet, imagenet_files=(f"vgg19_{_NOTOP}",)),
        BackboneSpec("resnet50", "ResNet50", _resnet50, "caffe", "conv5_block3_out", "conv5_block3_out",
                     r"^(conv\d_block\d+|conv1|pool1)_", imagenet_file=_resnet50_imagenet,
                     imagenet_files=(f"resnet50_{_NOTOP}",)),
        BackboneSpec("mobilenetv2", "MobileNetV2", _mobilenetv2, "tf", "out_relu", "out_relu",
                     r"^(?:bn_)?(block_\d+|expanded_conv|Conv1|Conv_1)(?:_|$)", imagenet_file=_mobilenetv2_imagenet,
                     imagenet_files=tuple(f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_{rows}_no_top.h5"
                                          for rows in MOBILENET_ROWS)),
    )
}  # fmt: skip


def register_backbone(spec: BackboneSpec) -> BackboneSpec:
    """Add a backbone to :data:`BACKBONES` (after the paper's four); every list and table then shows it.

    Raises:
        InputError: If a backbone of that name is registered already.
    """
    if spec.name in BACKBONES:
        raise InputError(f"backbone {spec.name!r} is registered already")
    BACKBONES[spec.name] = spec
    return spec


def backbone_names() -> tuple[str, ...]:
    """The registered backbones' names, in table order."""
    return tuple(BACKBONES)


def backbone_spec(name: str) -> BackboneSpec:
    """The registered backbone ``name``.

    Raises:
        InputError: Naming the choices, for an unknown backbone.
    """
    check_choice("backbone", name, BACKBONES)
    return BACKBONES[name]


def backbone_title(name: str) -> str:
    """The display title of a backbone (``mobilenetv2`` -> ``MobileNetV2``); unknown names unchanged."""
    spec = BACKBONES.get(name)
    return spec.title if spec else name


def backbone_rank(name: str) -> int:
    """A backbone's place in table order; unknown names after every registered one."""
    names = backbone_names()
    return names.index(name) if name in names else len(names)


def config_name(backbone: str, mode: str, roi: bool) -> str:
    """``<backbone>-<mode>-<roi|full>``: the name of one configuration (its MLflow run name)."""
    return f"{backbone}-{mode}-{'roi' if roi else 'full'}"


def read_backbone_meta(folder: str | Path) -> dict[str, Any] | None:
    """The ``backbone.json`` of a saved-backbone folder, or None when the folder holds none."""
    meta = Path(folder) / BACKBONE_META
    return json.loads(meta.read_text()) if meta.is_file() else None


#: The tags a run trained from a supervised-pretrained backbone carries: how well the pretraining did on
#: its own validation split (error, ROC-AUC), beside the error of always answering that split's majority class.
PRETRAINING_TAGS = (
    "lumbar.pretraining.val_error",
    "lumbar.pretraining.majority_val_error",
    "lumbar.pretraining.val_auc",
)


def pretraining_tags(weights: str) -> dict[str, str]:
    """:data:`PRETRAINING_TAGS` of a backbone saved by supervised pretraining (empty for any other weights)."""
    meta = read_backbone_meta(weights) if weights not in ("imagenet", "none") else None
    if not meta or meta.get("best_val_error") is None or meta.get("majority_val_error") is None:
        return {}
    values = (meta["best_val_error"], meta["majority_val_error"], meta.get("best_val_auc"))
    return {
        tag: f"{float(value):.4f}" for tag, value in zip(PRETRAINING_TAGS, values, strict=True) if value is not None
    }


def weights_source(weights: str) -> str:
    """``imagenet``, ``none``, or the ``source`` recorded with a backbone saved by lumbar (``supervised``/``ssl``)."""
    if weights in ("imagenet", "none"):
        return weights
    meta = read_backbone_meta(weights)
    if meta is not None:
        source = str(meta.get("source", "pretrained"))
        return "ssl" if source.startswith("ssl") else source
    return "pretrained"


def pretrained_backbone(folder: str | Path) -> str:
    """The backbone folder inside a pretraining step's output (or the folder itself when it is one)."""
    folder = Path(folder)
    return str(folder / "backbone") if (folder / "backbone" / BACKBONE_WEIGHTS).is_file() else str(folder)
