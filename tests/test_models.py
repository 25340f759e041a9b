"""The four backbones: modes, trainable layers, weight sources, Grad-CAM reachability."""

import re

import numpy as np
import pytest

from lumbar.errors import InputError
from lumbar.models import (
    BACKBONES,
    ModelConfig,
    WeightsError,
    adapt_head_norm,
    backbone_layers,
    blocks,
    build_model,
    head_description,
    imagenet_weights_file,
    load_backbone_weights,
    load_model,
    parse_unfreeze,
    pooled_features,
    save_backbone,
)

SIZE = 32


def _trainable(model):
    return [layer for layer in model.layers if layer.trainable and layer.weights]


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_each_backbone_builds_in_both_modes(backbone):
    frozen = build_model(ModelConfig(backbone, "none", "frozen", SIZE))
    assert frozen.input_shape == (None, SIZE, SIZE, 1) and frozen.output_shape == (None, 1)
    assert [layer.name for layer in _trainable(frozen)] == ["head_output"]
    assert frozen.get_layer("head_dropout").rate == 0.2
    # the backbone lives in the outer graph: its last conv layer is reachable by name
    assert frozen.get_layer(BACKBONES[backbone].gradcam_layer) is not None
    assert not any(hasattr(layer, "layers") for layer in frozen.layers)  # no nested sub-model

    tuned = build_model(ModelConfig(backbone, "none", "finetune", SIZE, unfreeze_blocks=2))
    top_two = set(blocks(tuned, backbone)[-2:])
    trainable_backbone = [layer for layer in _trainable(tuned) if layer.name != "head_output"]
    assert trainable_backbone
    pattern = re.compile(BACKBONES[backbone].block_pattern)
    assert {pattern.match(layer.name).group(1) for layer in trainable_backbone} == top_two
    frozen_below = [layer for layer in backbone_layers(tuned, backbone) if layer.weights and not layer.trainable]
    assert frozen_below  # everything under the top blocks stays frozen
    x = np.random.default_rng(0).uniform(0, 255, (2, SIZE, SIZE, 1)).astype("float32")
    out = tuned.predict(x, verbose=0)
    assert out.shape == (2, 1) and np.all((out >= 0) & (out <= 1))


def test_multiclass_head():
    model = build_model(ModelConfig("mobilenetv2", "none", "frozen", SIZE, num_classes=4))
    out = model.predict(np.zeros((3, SIZE, SIZE, 1), "float32"), verbose=0)
    assert out.shape == (3, 4) and np.allclose(out.sum(axis=1), 1, atol=1e-5)


def test_imagenet_offline_names_the_file(tmp_path, monkeypatch):
    from lumbar.weights import weight_file_names

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    for backbone in BACKBONES:
        name, url = imagenet_weights_file(backbone, 224)
        with pytest.raises(WeightsError) as excinfo:
            build_model(ModelConfig(backbone, "imagenet", "frozen", 64))
        message = str(excinfo.value)
        assert name in message and str(tmp_path / "keras" / "models") in message and "--weights" in message
        assert url.endswith(name)
        # the file the model reads is among those `lumbar weights import` copies for an air-gapped cluster
        assert name in weight_file_names() and imagenet_weights_file(backbone, 96)[0] in weight_file_names()
    assert imagenet_weights_file("vgg16")[0] == "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
    assert imagenet_weights_file("mobilenetv2", 128)[0].endswith("1.0_128_no_top.h5")
    assert imagenet_weights_file("mobilenetv2", 100)[0].endswith("1.0_224_no_top.h5")


def test_imagenet_weights_are_read_from_the_keras_cache(tmp_path, monkeypatch):
    """A weights file placed where Keras expects it is used (no download is attempted)."""
    import h5py
    import keras
    from keras.src.legacy.saving import legacy_h5_format

    # a file in the Keras applications' legacy .h5 layout, written from a random VGG16 without top
    reference = keras.applications.VGG16(include_top=False, weights=None, input_shape=(SIZE, SIZE, 3))
    name, _ = imagenet_weights_file("vgg16")
    (tmp_path / "models").mkdir()
    with h5py.File(tmp_path / "models" / name, "w") as handle:
        legacy_h5_format.save_weights_to_hdf5_group(handle, reference)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    model = build_model(ModelConfig("vgg16", "imagenet", "frozen", SIZE))
    for layer in ("block1_conv1", "block5_conv3"):
        np.testing.assert_array_equal(
            model.get_layer(layer).get_weights()[0], reference.get_layer(layer).get_weights()[0]
        )


def test_saved_backbone_loads_back_as_weights(tmp_path):
    donor = build_model(ModelConfig("vgg19", "none", "finetune", SIZE, unfreeze_blocks=5))
    save_backbone(donor, "vgg19", tmp_path / "bb", {"source": "test"})
    model = build_model(ModelConfig("vgg19", str(tmp_path / "bb"), "finetune", SIZE))
    for name in ("block1_conv1", "block5_conv4"):
        for a, b in zip(model.get_layer(name).get_weights(), donor.get_layer(name).get_weights(), strict=True):
            np.testing.assert_array_equal(a, b)
    with pytest.raises(WeightsError, match="holds a vgg19 backbone, not vgg16"):
        build_model(ModelConfig("vgg16", str(tmp_path / "bb"), "frozen", SIZE))
    with pytest.raises(WeightsError, match="not a backbone saved by lumbar"):
        build_model(ModelConfig("vgg19", str(tmp_path / "nothing"), "frozen", SIZE))


def test_pretrained_batchnorm_stays_frozen(tmp_path):
    donor = build_model(ModelConfig("resnet50", "none", "frozen", SIZE))
    save_backbone(donor, "resnet50", tmp_path / "bb")
    tuned = build_model(ModelConfig("resnet50", str(tmp_path / "bb"), "finetune", SIZE, unfreeze_blocks=1))
    import keras

    top = [layer for layer in backbone_layers(tuned, "resnet50") if layer.name.startswith("conv5_block3_")]
    assert any(layer.trainable for layer in top if not isinstance(layer, keras.layers.BatchNormalization))
    assert not any(layer.trainable for layer in top if isinstance(layer, keras.layers.BatchNormalization))
    info = load_backbone_weights(tuned, tmp_path / "bb", "resnet50")
    assert info["backbone"] == "resnet50"


def test_config_validation():
    # bad input is an InputError (one line, exit 2 in the CLI), as in every other config
    with pytest.raises(InputError, match="unknown backbone"):
        ModelConfig("alexnet")
    with pytest.raises(InputError, match="unknown mode"):
        ModelConfig("vgg16", mode="partial")
    with pytest.raises(InputError, match="at least 32"):
        ModelConfig("vgg16", image_size=16)


def _image_batches(images):
    import tensorflow as tf

    labels = np.zeros(len(images), np.float32)
    return tf.data.Dataset.from_tensor_slices((images.astype(np.float32), labels)).batch(8)


def _pooled(model, images):
    return pooled_features(model).predict(images, verbose=0)


def test_standardized_head_centres_and_scales_the_training_features():
    import keras

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (24, SIZE, SIZE, 1)).astype(np.float32)
    images[:12] *= np.linspace(0.2, 1.0, SIZE)[None, :, None, None]  # two kinds of images, so features vary
    model = build_model(ModelConfig("resnet50", "none", "frozen", SIZE, standardize=True))
    adapt_head_norm(model, _image_batches(images))
    normed = keras.Model(model.input, model.get_layer("head_norm").output).predict(_image_batches(images), verbose=0)
    varying = _pooled(model, _image_batches(images)).std(axis=0) > 1e-3
    assert varying.sum() > 100
    np.testing.assert_allclose(normed[:, varying].mean(axis=0), 0, atol=1e-3)
    np.testing.assert_allclose(normed[:, varying].std(axis=0), 1, rtol=1e-2)
    assert not model.get_layer("head_norm").trainable_weights  # fixed statistics, the head's Dense layer learns


def test_tiny_random_mobilenet_features_are_standardised_too():
    """Random-init MobileNetV2 pools features of ~1e-12: Keras' Normalization (std floor 1e-7) flattened them."""
    import keras

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (16, SIZE, SIZE, 1)).astype(np.float32)
    images[:8] *= 0.3
    model = build_model(ModelConfig("mobilenetv2", "none", "frozen", SIZE, standardize=True))
    pooled = _pooled(model, _image_batches(images))
    spread = pooled.std(axis=0)
    assert 0 < spread.max() < 1e-7  # the scale that defeated an absolute epsilon
    adapt_head_norm(model, _image_batches(images))
    normed = keras.Model(model.input, model.get_layer("head_norm").output).predict(_image_batches(images), verbose=0)
    varying = spread > 1e-3 * np.sqrt(np.mean(pooled**2))
    assert varying.sum() > 100
    np.testing.assert_allclose(normed[:, varying].std(axis=0), 1, rtol=1e-2)


def test_features_constant_on_the_training_images_are_centred_not_blown_up():
    import keras

    rng = np.random.default_rng(1)
    same = np.repeat(rng.integers(0, 256, (1, SIZE, SIZE, 1)), 8, axis=0).astype(np.float32)
    other = rng.integers(0, 256, (8, SIZE, SIZE, 1)).astype(np.float32)
    model = build_model(ModelConfig("resnet50", "none", "frozen", SIZE, standardize=True))
    adapt_head_norm(model, _image_batches(same))  # every feature is constant on these
    normed = keras.Model(model.input, model.get_layer("head_norm").output).predict(_image_batches(other), verbose=0)
    raw = _pooled(model, _image_batches(other)) - _pooled(model, _image_batches(same))[0]
    np.testing.assert_allclose(normed, raw, rtol=1e-4, atol=1e-4)  # variance 1: only centred


def test_a_fine_tuned_standardized_head_keeps_its_statistics_fixed():
    model = build_model(ModelConfig("vgg16", "none", "finetune", SIZE, standardize=True))
    assert not model.get_layer("head_norm").trainable_weights  # set once before training, never trained
    assert model.get_layer("block5_conv3").trainable and not model.get_layer("block4_conv3").trainable


def test_unfreeze_rules():
    assert parse_unfreeze("blocks:2") == ("blocks", 2)
    assert parse_unfreeze("layers:3") == ("layers", 3)
    assert parse_unfreeze("2") == ("blocks", 2)
    for bad in ("blocks:0", "layers:", "top:2", "blocks:two", ""):
        with pytest.raises(InputError, match="blocks:N or layers:N"):
            parse_unfreeze(bad)


@pytest.mark.parametrize("backbone", ["vgg16", "resnet50"])
def test_unfreeze_layers_trains_the_top_weighted_layers(backbone):
    import keras

    model = build_model(ModelConfig(backbone, "none", "finetune", SIZE, unfreeze_layers=2))
    layers = backbone_layers(model, backbone)
    kernels = [layer for layer in layers if hasattr(layer, "kernel")]
    trained = [layer for layer in kernels if layer.trainable]
    assert trained == kernels[-2:]  # the top two convolutions, nothing below them
    lowest = layers.index(kernels[-2])
    below = [layer for layer in layers[:lowest] if layer.weights]
    assert below and not any(layer.trainable for layer in below)
    # batch normalisation stays in inference mode while the lower backbone is frozen, even from random weights
    norms = [layer for layer in layers[lowest:] if isinstance(layer, keras.layers.BatchNormalization)]
    assert norms == [] or not any(layer.trainable for layer in norms)


def test_batchnorm_trains_only_when_the_whole_random_backbone_trains():
    import keras

    scratch = build_model(ModelConfig("resnet50", "none", "finetune", SIZE, unfreeze_blocks=1000))
    top = build_model(ModelConfig("resnet50", "none", "finetune", SIZE, unfreeze_blocks=1))
    for model, expected in ((scratch, True), (top, False)):
        norms = [x for x in backbone_layers(model, "resnet50") if isinstance(x, keras.layers.BatchNormalization)]
        assert norms and all(layer.trainable is expected for layer in norms[-3:])


def test_the_head_is_described_as_built():
    plain = ModelConfig("vgg16", "none", "frozen", SIZE)
    assert head_description(plain) == "GlobalAveragePooling2D -> Dropout(0.2) -> Dense(1, sigmoid)"
    model = build_model(plain)
    assert [layer.name for layer in model.layers[-3:]] == ["head_pool", "head_dropout", "head_output"]
    probe = ModelConfig("vgg16", "none", "frozen", SIZE, num_classes=4, standardize=True)
    assert head_description(probe) == (
        "GlobalAveragePooling2D -> Normalization(train-set statistics) -> Dropout(0.2) -> Dense(4, softmax)"
    )


def test_the_head_penalty_is_part_of_the_loss(tmp_path):
    """``head_l2`` puts ``head_l2 * sum(w**2)`` of the output kernel into the loss, and only that kernel."""
    assert not build_model(ModelConfig("vgg16", "none", "frozen", SIZE)).losses
    penalised = ModelConfig("vgg16", "none", "frozen", SIZE, head_l2=0.5)
    assert head_description(penalised).endswith("Dense(1, sigmoid, L2 0.5)")
    model = build_model(penalised)
    kernel = np.asarray(model.get_layer("head_output").kernel)
    (penalty,) = model.losses
    assert float(penalty) == pytest.approx(0.5 * float((kernel**2).sum()), rel=1e-5)
    assert float(penalty) > 0
    model.save(tmp_path / "model.keras")  # the penalty is part of the saved architecture
    assert load_model(tmp_path / "model.keras").get_layer("head_output").kernel_regularizer is not None
    with pytest.raises(InputError, match="head_l2 must be 0 or more"):
        ModelConfig("vgg16", head_l2=-1.0)


def _keras_state():
    import keras
    from tensorflow.python.framework import config as tf_config

    return keras.mixed_precision.global_policy().name, bool(tf_config.is_op_determinism_enabled())


@pytest.mark.parametrize("found", [("float32", False), ("mixed_float16", True)])
def test_keras_session_restores_what_it_found(found):
    import random

    import keras
    from tensorflow.python.framework import config as tf_config

    from lumbar.models import keras_session

    before = _keras_state()
    keras.mixed_precision.set_global_policy(found[0])
    (tf_config.enable_op_determinism if found[1] else tf_config.disable_op_determinism)()
    try:
        assert _keras_state() == found
        random.seed(5)
        expected_draw = random.random()
        random.seed(5)
        inside = ("float32", True) if found[0] != "float32" else ("mixed_float16", False)
        with keras_session(seed=3, deterministic=inside[1], precision=inside[0]) as policy:
            assert policy == inside[0] and _keras_state() == inside
            seeded = random.random()
        assert _keras_state() == found
        assert random.random() == expected_draw  # the caller's random stream continues as if untouched
        with (
            pytest.raises(RuntimeError, match="body failed"),
            keras_session(seed=3, deterministic=inside[1], precision=inside[0]),
        ):
            assert random.random() == seeded  # the same seed gives the same stream
            raise RuntimeError("body failed")
        assert _keras_state() == found
    finally:
        keras.mixed_precision.set_global_policy(before[0])
        (tf_config.enable_op_determinism if before[1] else tf_config.disable_op_determinism)()
