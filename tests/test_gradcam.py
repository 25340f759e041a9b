"""Grad-CAM correctness on images whose abnormality position is known."""

import numpy as np
import pytest

from lumbar.gradcam import gradcam, overlay
from lumbar.models import ModelConfig, build_model

SIZE = 64


def _images(n, rng):
    """Noise images; positives carry a bright round lesion at a random place."""
    x = rng.normal(100, 25, (n, SIZE, SIZE, 1)).astype("float32")
    y = np.arange(n) % 2
    centres = rng.integers(12, SIZE - 12, (n, 2))
    rows, cols = np.mgrid[0:SIZE, 0:SIZE]
    for i in np.flatnonzero(y):
        x[i, (rows - centres[i, 0]) ** 2 + (cols - centres[i, 1]) ** 2 <= 36, 0] += 120
    return np.clip(x, 0, 255), y.astype("float32"), centres


@pytest.fixture(scope="module")
def lesion_model():
    import keras

    rng = np.random.default_rng(0)
    keras.utils.set_random_seed(0)
    x, y, _ = _images(128, rng)
    model = build_model(ModelConfig("vgg16", "none", "finetune", SIZE, unfreeze_blocks=3))
    model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="binary_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=3, batch_size=16, verbose=0)
    return model, _images(40, rng)


def test_heat_map_peaks_on_the_lesion(lesion_model):
    model, (x, y, centres) = lesion_model
    positive = y == 1
    assert (model.predict(x, verbose=0)[:, 0] >= 0.5).astype(int).tolist() == y.astype(int).tolist()
    maps, _ = gradcam(model, x[positive], "vgg16")
    assert maps.shape == (positive.sum(), SIZE, SIZE) and maps.min() >= 0 and maps.max() <= 1
    radius = 12
    peaks = [np.unravel_index(m.argmax(), m.shape) for m in maps]
    hits = [(r - c[0]) ** 2 + (q - c[1]) ** 2 <= radius**2 for (r, q), c in zip(peaks, centres[positive], strict=True)]
    chance = np.pi * radius**2 / SIZE**2
    assert np.mean(hits) > max(0.6, 3 * chance)


def test_heat_map_is_not_inverted(lesion_model):
    model, (x, y, centres) = lesion_model
    positive = y == 1
    rows, cols = np.mgrid[0:SIZE, 0:SIZE]

    def lesion_share(maps):
        shares = []
        for m, c in zip(maps, centres[positive], strict=True):
            inside = (rows - c[0]) ** 2 + (cols - c[1]) ** 2 <= 100
            shares.append(m[inside].mean() - m[~inside].mean())
        return np.asarray(shares)

    abnormal, _ = gradcam(model, x[positive], "vgg16", class_index=1)
    normal, _ = gradcam(model, x[positive], "vgg16", class_index=0)
    assert np.mean(lesion_share(abnormal) > 0) >= 0.8  # evidence for "abnormal" sits on the lesion
    assert lesion_share(abnormal).mean() > lesion_share(normal).mean()  # and not the other way round


def test_overlay_is_rgb():
    heat = np.zeros((8, 8))
    heat[2, 3] = 1
    rgb = overlay(np.full((8, 8), 128.0), heat)
    assert rgb.shape == (8, 8, 3) and rgb.dtype == np.uint8
    assert rgb[2, 3, 0] > rgb[0, 0, 0]  # jet: the peak is red
