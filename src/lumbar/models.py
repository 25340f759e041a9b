"""Transfer-learning models: the registered backbones (:mod:`lumbar.backbones`) with a small head.

* Backbones (the paper's ``vgg16``, ``vgg19``, ``resnet50``, ``mobilenetv2``, and any other registered in
  :data:`lumbar.backbones.BACKBONES`) built with ``include_top=False``. Inputs are
  grey images with values 0-255, shape ``(size, size, 1)``; a :class:`BackbonePreprocess` layer repeats
  them to 3 channels and applies the backbone's own ``preprocess_input`` (``caffe`` mode for VGG and
  ResNet, ``tf`` mode for MobileNetV2), so a saved model is self-contained.
* Head: global average pooling -> Dropout (0.2) -> Dense (1 sigmoid for the binary normal/abnormal
  target; softmax for multi-class targets such as the four disc states).
* Weights: ``imagenet`` (read from Keras' cache ``$KERAS_HOME/models/<file>``; never downloaded: a
  missing file is a clear error naming it), ``none`` (random initialisation), or a path/URI to a
  backbone saved by :func:`save_backbone` (procedures 2 and 3 pretrain one).
* Modes: ``frozen`` trains the head only; ``finetune`` also trains the top ``unfreeze_blocks`` blocks
  of the backbone (or, with ``unfreeze_layers``, its top weighted layers; :func:`parse_unfreeze` reads
  the ``blocks:N`` / ``layers:N`` rule the CLI takes). BatchNormalization layers of a pretrained
  backbone stay frozen in both.
* The backbone is built on the model's own input tensor, so its layers live in the outer functional
  graph (no nested sub-model): Grad-CAM can reach the last convolutional layer directly.
* Keras' global state (seeds, op determinism, the precision policy) is set only inside
  :func:`keras_session`, which restores what it found.
* A trained model's folder holds ``model.keras`` and ``model.json`` (:func:`read_model_info`).
"""

from __future__ import annotations

import json
import os
import random
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from lumbar.backbones import BACKBONE_FORMAT, BACKBONE_META, BACKBONE_WEIGHTS, BACKBONES, DEFAULT_BACKBONE, MODES
from lumbar.errors import InputError, LumbarError, check_choice
from lumbar.profiles import PAPER_IMAGE_SIZE

PREPROCESS_LAYER = "preprocess"
#: The head's first layer: the backbone's features, pooled; the head's other layers read its output.
HEAD_POOL_LAYER = "head_pool"
HEAD_NORM_LAYER = "head_norm"


class WeightsError(LumbarError):
    """Backbone weights are missing or do not fit."""


#: Units an unfreeze rule counts from the top of the backbone: whole blocks, or single weighted layers.
UNFREEZE_UNITS: tuple[str, ...] = ("blocks", "layers")
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


@keras.saving.register_keras_serializable(package="lumbar")
class BackbonePreprocess(keras.layers.Layer):
    """Grey images (0-255, one channel) -> the 3-channel input a backbone expects.

    Args:
        mode: ``caffe`` (BGR mean subtraction: VGG16, VGG19, ResNet50) or ``tf`` (scale to [-1, 1]:
            MobileNetV2), as ``keras.applications.<model>.preprocess_input`` does.
    """

    def __init__(self, mode: str = "caffe", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if mode not in ("caffe", "tf"):
            raise ValueError(f"unknown preprocessing mode {mode!r}")
        self.mode = mode

    def call(self, inputs):  # type: ignore[no-untyped-def]
        """Repeat the grey channel three times and normalise as the backbone was trained."""
        x = keras.ops.concatenate([inputs, inputs, inputs], axis=-1)
        if self.mode == "tf":
            return x / 127.5 - 1.0
        return x - keras.ops.convert_to_tensor(_CAFFE_MEAN_BGR, dtype=x.dtype)

    def compute_output_shape(self, input_shape):  # type: ignore[no-untyped-def]
        """Same spatial shape, three channels."""
        return (*input_shape[:-1], 3)

    def get_config(self) -> dict:
        """Serialisable configuration."""
        return {**super().get_config(), "mode": self.mode}


@keras.saving.register_keras_serializable(package="lumbar")
class FeatureStandardize(keras.layers.Layer):
    """``(x - mean) * inv_std`` with fixed statistics, computed in float32 (the probe's ``head_norm``).

    Keras' ``Normalization`` divides by ``max(std, 1e-7)``: a random-initialised MobileNetV2 pools features
    of about 1e-11 whose spread is far below that floor, so the head saw only its bias. Here the statistics
    are set by :func:`adapt_head_norm` with no absolute floor, and the layer runs in float32 whatever the
    precision policy (``inv_std`` can exceed float16's range).

    Args:
        units: Number of features (the pooled width).
    """

    def __init__(self, units: int, **kwargs: Any) -> None:
        kwargs["dtype"] = "float32"
        super().__init__(**kwargs)
        self.units = units
        self.mean = self.add_weight(shape=(units,), initializer="zeros", trainable=False, name="mean")
        self.inv_std = self.add_weight(shape=(units,), initializer="ones", trainable=False, name="inv_std")

    def call(self, inputs):  # type: ignore[no-untyped-def]
        """Centre and scale each feature."""
        return (keras.ops.cast(inputs, "float32") - self.mean) * self.inv_std

    def compute_output_shape(self, input_shape):  # type: ignore[no-untyped-def]
        """Same shape."""
        return input_shape

    def get_config(self) -> dict:
        """Serialisable configuration."""
        return {**super().get_config(), "units": self.units}


@dataclass(frozen=True)
class ModelConfig:
    """The architecture of one classifier.

    Attributes:
        backbone: One of :data:`BACKBONES`.
        weights: ``imagenet``, ``none``, or a path / ``s3://`` URI of a backbone saved by lumbar.
        mode: ``frozen`` or ``finetune``.
        image_size: Input size in pixels (square).
        num_classes: 2 for the binary target (one sigmoid unit), more for softmax.
        dropout: Dropout rate of the head (paper: 0.2).
        unfreeze_blocks: Top backbone blocks trained in ``finetune`` mode.
        unfreeze_layers: When positive, ``finetune`` trains this many top weighted layers of the backbone
            (convolutions and dense layers, counted from the top) instead of ``unfreeze_blocks`` blocks.
        standardize: Put a :class:`FeatureStandardize` layer (``head_norm``) between the pooled features
            and the dropout; its mean and spread are set from the training images' pooled features
            (:func:`adapt_head_norm`): once before training in ``frozen`` mode, so the head sees
            standardised features throughout, and, when fine-tuning, again before each epoch's
            validation (by :mod:`lumbar.train`), so that they follow the features the top blocks change.
        head_l2: L2 penalty on the head's output kernel, added to the mean loss as ``head_l2 * sum(w**2)``
            (0: none, as in the paper). On a few dozen training images a linear probe on hundreds of
            features separates them in many ways; the penalty picks the one with the smallest weights.
    """

    backbone: str = DEFAULT_BACKBONE
    weights: str = "imagenet"
    mode: str = "frozen"
    image_size: int = PAPER_IMAGE_SIZE
    num_classes: int = 2
    dropout: float = 0.2
    unfreeze_blocks: int = 1
    unfreeze_layers: int = 0
    standardize: bool = False
    head_l2: float = 0.0

    def __post_init__(self) -> None:
        check_choice("backbone", self.backbone, BACKBONES)
        check_choice("mode", self.mode, MODES)
        if not self.head_l2 >= 0:
            raise InputError("head_l2 must be 0 or more")
        if self.image_size < BACKBONES[self.backbone].min_size:
            raise InputError(f"{self.backbone} needs images of at least {BACKBONES[self.backbone].min_size} px")
        if self.num_classes < 2:
            raise InputError("num_classes must be at least 2")
        if not 0 <= self.dropout < 1:
            raise InputError("dropout must be in [0, 1)")
        if self.unfreeze_blocks < 0 or self.unfreeze_layers < 0:
            raise InputError("unfreeze_blocks and unfreeze_layers must not be negative")
        if not self.weights:
            raise InputError("weights must be imagenet, none, or a path/URI")


def parse_unfreeze(rule: str) -> tuple[str, int]:
    """Read a fine-tune rule: ``blocks:N``, ``layers:N`` or a bare ``N`` (blocks).

    ``blocks:N`` trains the backbone's top N blocks (as :func:`blocks` names them), ``layers:N`` its top N
    weighted layers.

    Returns:
        The unit (one of :data:`UNFREEZE_UNITS`) and the count.

    Raises:
        InputError: If the rule is not one of these forms, or the count is below 1.
    """
    unit, _, count = rule.strip().rpartition(":")
    unit = unit or "blocks"
    if unit not in UNFREEZE_UNITS or not count.isdigit() or int(count) < 1:
        raise InputError(f"unfreeze must be blocks:N or layers:N with N >= 1, got {rule!r}")
    return unit, int(count)


def _output_layer(num_classes: int) -> tuple[int, str]:
    """The head's output units and activation: one sigmoid unit for two classes, else a softmax over them."""
    return (1, "sigmoid") if num_classes == 2 else (num_classes, "softmax")


def head_description(config: ModelConfig) -> str:
    """The classifier head on top of the backbone, as one line (recorded with every run)."""
    norm = "Normalization(train-set statistics) -> " if config.standardize else ""
    units, activation = _output_layer(config.num_classes)
    penalty = f", L2 {config.head_l2:g}" if config.head_l2 else ""
    return f"GlobalAveragePooling2D -> {norm}Dropout({config.dropout:g}) -> Dense({units}, {activation}{penalty})"


def keras_models_dir() -> Path:
    """Keras' weight cache: ``$KERAS_HOME/models`` (default ``~/.keras/models``)."""
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras") / "models"


def imagenet_weights_file(backbone: str, image_size: int = PAPER_IMAGE_SIZE) -> tuple[str, str]:
    """The file name Keras expects for a backbone's ImageNet weights without top, and where Keras publishes it.

    Raises:
        InputError: For an unknown backbone, or one registered without ImageNet weights.
    """
    spec = BACKBONES.get(backbone)
    if spec is None or spec.imagenet_file is None:
        raise InputError(f"{backbone!r} has no ImageNet weights; use --weights none or a saved backbone")
    return spec.imagenet_file(image_size)


def _resolve_imagenet(backbone: str, image_size: int) -> str:
    name, url = imagenet_weights_file(backbone, image_size)
    path = keras_models_dir() / name
    if not path.is_file():
        # air-gapped clusters: the file imported by `lumbar weights import` (LUMBAR_WEIGHTS_URI) into Keras' cache
        from lumbar.weights import fetch_imagenet_weights, import_command_hint, weights_uri

        uri = weights_uri()
        if uri and fetch_imagenet_weights(name, path.parent, uri) is None:
            raise WeightsError(
                f"ImageNet weights for {backbone} ({name}) are not in {uri}: import them with "
                f"`{import_command_hint(uri)}` where DIR holds the file (from {url})"
            )
    if not path.is_file():
        raise WeightsError(
            f"ImageNet weights for {backbone} are not in the Keras cache and cannot be downloaded here: place {name} "
            f"in {path.parent} (from {url}), or on a cluster import them with `{import_command_hint()}` and set "
            "LUMBAR_WEIGHTS_URI, or pass --weights PATH|s3://URI to a backbone saved by lumbar, or --weights none"
        )
    return str(path)


def build_model(config: ModelConfig) -> keras.Model:
    """Build (but do not compile) a classifier; trainable flags follow ``config.mode``.

    Raises:
        WeightsError: If the requested weights are unavailable or do not fit the backbone.
    """
    spec = BACKBONES[config.backbone]
    weights: str | None = None
    if config.weights == "imagenet":
        weights = _resolve_imagenet(config.backbone, config.image_size)
    inputs = keras.Input((config.image_size, config.image_size, 1), name="image")
    x = BackbonePreprocess(spec.preprocess, name=PREPROCESS_LAYER)(inputs)
    base = spec.build(include_top=False, weights=weights, input_tensor=x)
    features = base.get_layer(spec.output_layer).output
    h = keras.layers.GlobalAveragePooling2D(name=HEAD_POOL_LAYER)(features)
    if config.standardize:
        h = FeatureStandardize(int(h.shape[-1]), name=HEAD_NORM_LAYER)(h)
    h = keras.layers.Dropout(config.dropout, name="head_dropout")(h)
    units, activation = _output_layer(config.num_classes)
    penalty = keras.regularizers.L2(config.head_l2) if config.head_l2 else None
    outputs = keras.layers.Dense(
        units, activation=activation, kernel_regularizer=penalty, name="head_output", dtype="float32"
    )(h)
    model = keras.Model(inputs, outputs, name=f"lumbar_{config.backbone}")
    if config.weights not in ("imagenet", "none"):
        load_backbone_weights(model, config.weights, config.backbone)
    set_trainable(model, config)
    return model


def adapt_head_norm(model: keras.Model, images: Any) -> None:
    """Set the ``head_norm`` layer's mean and inverse spread from the pooled features of ``images``.

    Features that are constant on ``images`` keep a variance of 1 (as scikit-learn's ``StandardScaler``
    does).

    Args:
        model: A model built with ``standardize=True``.
        images: A ``tf.data`` dataset of ``(image, label)`` batches (the training split, not augmented).
    """
    set_head_norm(model, pooled_features(model).predict(images, verbose=0))


def pooled_features(model: keras.Model) -> keras.Model:
    """``model`` up to its pooled backbone features (:data:`HEAD_POOL_LAYER`), the input of its head."""
    return keras.Model(model.input, model.get_layer(HEAD_POOL_LAYER).output)


def set_head_norm(model: keras.Model, features: np.ndarray) -> None:
    """Set the ``head_norm`` layer's mean and inverse spread from pooled training features ``(n, d)``."""
    features = np.asarray(features, dtype=np.float64)
    mean, variance = features.mean(axis=0), features.var(axis=0)
    # a feature constant on the training images (a ReLU that never fires there) is centred, not scaled:
    # dividing by its near-zero spread would blow up whatever it shows on other images
    # "constant" is relative to the features' overall size (their RMS), like Keras' absolute epsilon but
    # scale-free: random-init MobileNetV2's ~1e-12 features are standardised, while batching jitter
    # (float32 rounding, ~1e-6 relative) on truly constant features is not blown up
    floor = 1e-5 * float(np.sqrt(np.mean(features**2)))
    variance[variance <= floor**2] = 1.0
    layer = model.get_layer(HEAD_NORM_LAYER)
    layer.mean.assign(mean.astype(np.float32))
    layer.inv_std.assign((1.0 / np.sqrt(variance)).astype(np.float32))


def backbone_layers(model: keras.Model, backbone: str) -> list[keras.layers.Layer]:
    """The backbone's layers inside a lumbar model (everything between the preprocessing and the head)."""
    names = [layer.name for layer in model.layers]
    start = names.index(PREPROCESS_LAYER) + 1
    end = names.index(BACKBONES[backbone].output_layer) + 1
    return model.layers[start:end]


def blocks(model: keras.Model, backbone: str) -> list[str]:
    """The backbone's block names, bottom to top (the unit that ``unfreeze_blocks`` counts)."""
    pattern = re.compile(BACKBONES[backbone].block_pattern)
    seen: list[str] = []
    for layer in backbone_layers(model, backbone):
        match = pattern.match(layer.name)
        block = match.group(1) if match else None
        if block is not None and block not in seen:
            seen.append(block)
    return seen


def set_trainable(model: keras.Model, config: ModelConfig) -> None:
    """Freeze the backbone (``frozen``) or all but its top blocks, or top weighted layers (``finetune``).

    BatchNormalization layers stay frozen (inference mode) unless the whole backbone trains from random
    weights: a pretrained backbone's statistics belong to its pretraining data, and in a random
    backbone whose lower blocks stay frozen, top BatchNormalization layers in training mode would
    normalise by batch statistics the fixed head standardisation and the inference-time moving
    statistics never see (measured: MobileNetV2 ``--weights none`` fine-tuned to one class, AUC 0.50).
    """
    layers = backbone_layers(model, config.backbone)
    if config.mode == "finetune" and config.unfreeze_layers:
        # the top N layers with a kernel; the batch normalisation layers among them follow the rule below
        kernels = [i for i, layer in enumerate(layers) if hasattr(layer, "kernel")]
        lowest = kernels[-config.unfreeze_layers] if len(kernels) >= config.unfreeze_layers else 0
        in_top = [i >= lowest for i in range(len(layers))]
    else:
        pattern = re.compile(BACKBONES[config.backbone].block_pattern)
        chosen = blocks(model, config.backbone)[::-1][: config.unfreeze_blocks] if config.mode == "finetune" else []
        top = set(chosen)
        in_top = [bool(m) and m.group(1) in top for m in (pattern.match(layer.name) for layer in layers)]
    from_scratch = config.weights == "none" and all(in_top)
    for layer, trained in zip(layers, in_top, strict=True):
        is_bn = isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = trained and (not is_bn or from_scratch)


def _weighted(layers: list[keras.layers.Layer]) -> list[keras.layers.Layer]:
    return [layer for layer in layers if layer.weights]


def save_backbone(model: keras.Model, backbone: str, folder: str | Path, metadata: dict | None = None) -> Path:
    """Save a model's backbone weights (no head) where ``--weights PATH`` can read them.

    Writes ``backbone.npz`` (arrays keyed ``<layer>/<index>``) and ``backbone.json``.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        f"{layer.name}/{i}": np.asarray(w)
        for layer in _weighted(backbone_layers(model, backbone))
        for i, w in enumerate(layer.get_weights())
    }
    np.savez(folder / BACKBONE_WEIGHTS, **arrays)
    info = {
        "format": BACKBONE_FORMAT,
        "backbone": backbone,
        "layers": len({k.split("/")[0] for k in arrays}),
        **(metadata or {}),
    }
    (folder / BACKBONE_META).write_text(json.dumps(info, indent=2))
    return folder


def _local_backbone(source: str) -> Path:
    from lumbar.storage import is_remote

    if not is_remote(source):
        return Path(source)
    from lumbar.paths import data_dir
    from lumbar.storage import open_store

    store = open_store(source)
    digest = store.sha256(BACKBONE_WEIGHTS) or "unknown"
    target = data_dir() / "cache" / "backbones" / digest[:16]
    if not (target / BACKBONE_WEIGHTS).is_file():
        store.get_tree("", target)
    return target


def load_backbone_weights(model: keras.Model, source: str | Path, backbone: str) -> dict:
    """Load a backbone saved by :func:`save_backbone` (folder, or ``s3://`` URI) into ``model``.

    Returns:
        The backbone's metadata (``backbone.json``).

    Raises:
        WeightsError: If the files are missing, were saved from another backbone, or do not fit.
    """
    folder = _local_backbone(str(source))
    meta_path, weights_path = folder / BACKBONE_META, folder / BACKBONE_WEIGHTS
    if not weights_path.is_file() or not meta_path.is_file():
        raise WeightsError(f"{source} is not a backbone saved by lumbar (backbone.npz and backbone.json expected)")
    info = json.loads(meta_path.read_text())
    if info.get("backbone") != backbone:
        raise WeightsError(f"{source} holds a {info.get('backbone')} backbone, not {backbone}")
    with np.load(weights_path) as data:
        stored = {key: data[key] for key in data.files}
    for layer in _weighted(backbone_layers(model, backbone)):
        values = [stored.get(f"{layer.name}/{i}") for i in range(len(layer.weights))]
        if any(v is None for v in values):
            raise WeightsError(f"{source} has no weights for layer {layer.name}")
        try:
            layer.set_weights(values)
        except ValueError as exc:
            raise WeightsError(f"{source}: weights of layer {layer.name} do not fit ({exc})") from None
    return info


def load_model(path: str | Path) -> keras.Model:
    """Load a model saved by lumbar (``.keras``), with the lumbar layers registered."""
    path = Path(path)
    if path.is_dir():
        path = path / "model.keras"
    if not path.is_file():
        raise LumbarError(f"{path} is not a saved lumbar model (model.keras expected)")
    return keras.models.load_model(path, compile=False)


def read_model_info(model_dir: str | Path) -> dict:
    """The ``model.json`` of a trained model folder (written by :func:`lumbar.train.train_model`).

    Raises:
        LumbarError: If the folder holds no ``model.json``.
    """
    path = Path(model_dir) / "model.json"
    if not path.is_file():
        raise LumbarError(f"{model_dir} is not a model trained by lumbar (model.json missing)")
    return json.loads(path.read_text())


#: Keras' mixed-precision policy per backend: bfloat16 on JAX (no loss scaling needed), float16 on
#: TensorFlow (the policy the TensorFlow GPU image was tuned with; Keras adds loss scaling to it).
MIXED_POLICIES: dict[str, str] = {"jax": "mixed_bfloat16", "tensorflow": "mixed_float16"}


def mixed_policy() -> str:
    """The mixed-precision policy of the running Keras backend (see :data:`MIXED_POLICIES`)."""
    return MIXED_POLICIES.get(keras.backend.backend(), "mixed_float16")


@contextmanager
def precision_policy(mixed: bool) -> Iterator[str]:
    """Build and train under mixed precision (``mixed=True``) or float32; restore the previous policy after.

    Keras' dtype policy is global state: models built inside the block take it. The head's output layer
    stays float32 under either policy.

    Yields:
        The policy's name (``float32``, ``mixed_bfloat16`` or ``mixed_float16``).
    """
    with _global_policy(mixed_policy() if mixed else "float32") as name:
        yield name


@contextmanager
def _global_policy(name: str) -> Iterator[str]:
    """Keras' global dtype policy set to ``name`` inside the block, and back to what it was after."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield name
    finally:
        keras.mixed_precision.set_global_policy(previous)


def _determinism() -> Any:
    """TensorFlow's op-determinism switches (``is_op_determinism_enabled`` lives only in its private API)."""
    from tensorflow.python.framework import config as tf_config

    return tf_config


def _set_determinism(tf_config: Any, enabled: bool) -> None:
    if enabled:
        tf_config.enable_op_determinism()
    else:
        tf_config.disable_op_determinism()


@contextmanager
def keras_session(seed: int, deterministic: bool, precision: str = "float32") -> Iterator[str]:
    """Seed the random generators, set op determinism and the precision policy; restore what was found on exit.

    Keras' and TensorFlow's settings are process-wide: a run that left mixed precision or op determinism
    behind changed every model built after it in the same process (a test session, a notebook). Inside
    the block: Python's, NumPy's and the backend's generators are seeded with ``seed``, TensorFlow's op
    determinism is ``deterministic``, and the global dtype policy is ``precision``. On exit, also when the
    block raises, the policy, the determinism switch and Python's and NumPy's generator states are what
    they were before (the backend's seed cannot be read back; every session sets its own).

    Args:
        seed: Seed of weights initialisation, shuffling and augmentation.
        deterministic: Switch TensorFlow's op determinism on (reproducible, slower; the CPU default).
        precision: A Keras dtype policy name: ``float32``, ``mixed_float16`` or ``mixed_bfloat16``.

    Yields:
        The policy's name.
    """
    python_state, numpy_state = random.getstate(), np.random.get_state()
    tf_config = _determinism()
    was_deterministic = bool(tf_config.is_op_determinism_enabled())
    try:
        with _global_policy(precision):
            keras.utils.set_random_seed(seed)
            _set_determinism(tf_config, deterministic)
            yield precision
    finally:
        _set_determinism(tf_config, was_deterministic)
        random.setstate(python_state)
        np.random.set_state(numpy_state)
