"""Grad-CAM heat maps from the backbone's last convolutional layer (Selvaraju et al., 2017).

For the class explained (by default the predicted one) the gradient of its score with respect to the
last convolutional feature map is averaged over space to weight each channel; the weighted sum of
the channels, passed through a ReLU, is the map. Scores are logits, taken before the output
activation (a saturated sigmoid has no gradient left). For the binary output the score is the logit
for "abnormal" and its negation for "normal", so a map always shows evidence *for* the class it
explains (the map is never inverted). Maps are scaled to [0, 1] and resized to the input.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import numpy as np

from lumbar.backbones import BACKBONES


def gradcam(
    model: Any,
    images: np.ndarray,
    backbone: str | None = None,
    layer: str | None = None,
    class_index: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Compute Grad-CAM maps.

    Args:
        model: A lumbar model (grey input, 0-255).
        images: ``(N, H, W, 1)`` float images.
        backbone: Backbone name (picks its last convolutional layer); inferred from the model name if None.
        layer: Explicit layer name (overrides ``backbone``).
        class_index: Class to explain (binary: 1 abnormal, 0 normal); None explains each image's prediction.

    Returns:
        ``(maps, outputs)``: maps ``(N, H, W)`` in [0, 1] and the model outputs.
    """
    import keras
    import tensorflow as tf

    if layer is None:
        backbone = backbone or model.name.removeprefix("lumbar_")
        layer = BACKBONES[backbone].gradcam_layer
    head = model.get_layer("head_output")
    # scores are taken before the output activation: a saturated sigmoid or softmax has no gradient left
    grad_model = keras.Model(model.inputs, [model.get_layer(layer).output, head.input, model.output])
    kernel, bias = tf.cast(head.kernel, tf.float32), tf.cast(head.bias, tf.float32)
    x = tf.convert_to_tensor(images, dtype=tf.float32)
    with tf.GradientTape() as tape:
        features, hidden, outputs = grad_model(x, training=False)
        logits = tf.matmul(tf.cast(hidden, tf.float32), kernel) + bias
        outputs = tf.cast(outputs, tf.float32)
        if logits.shape[-1] == 1:
            if class_index is None:
                sign = tf.where(logits[:, 0] >= 0, 1.0, -1.0)
            else:
                sign = tf.fill(tf.shape(logits)[:1], 1.0 if class_index == 1 else -1.0)
            score = logits[:, 0] * sign
        else:
            chosen = tf.argmax(logits, axis=-1) if class_index is None else tf.fill(tf.shape(logits)[:1], class_index)
            score = tf.gather(logits, chosen, axis=1, batch_dims=1)
    grads = tf.cast(tape.gradient(score, features), tf.float32)
    weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(weights * tf.cast(features, tf.float32), axis=-1))
    peak = tf.reduce_max(cam, axis=(1, 2), keepdims=True)
    cam = tf.math.divide_no_nan(cam, peak)
    maps = tf.image.resize(cam[..., None], images.shape[1:3], method="bilinear")[..., 0]
    return np.clip(maps.numpy(), 0.0, 1.0), outputs.numpy()


def overlay(image: np.ndarray, heat: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """Blend a [0, 1] heat map (jet colours) over a grey image; returns RGB uint8."""
    from matplotlib import colormaps

    grey = np.asarray(image, dtype=np.float32).reshape(heat.shape)
    grey = grey / max(float(grey.max()), 1.0)
    colours = colormaps["jet"](heat)[..., :3]
    mixed = (1 - alpha) * np.repeat(grey[..., None], 3, axis=-1) + alpha * colours
    return np.clip(mixed * 255, 0, 255).astype(np.uint8)


def _png_data_uri(rgb: np.ndarray) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def gradcam_report(
    model_dir: str | Path, dataset: str | Path, out_dir: str | Path, n: int = 8, split: str = "test", seed: int = 0
) -> Path:
    """Write Grad-CAM overlays of ``n`` images of a split (both classes when possible) as PNG files and one HTML page.

    Returns:
        The HTML page (``<out_dir>/index.html``); images are in ``<out_dir>/images/``.
    """
    from PIL import Image

    from lumbar.data import split_records
    from lumbar.models import load_model, read_model_info
    from lumbar.versions import fetch_dataset

    info = read_model_info(model_dir)
    config = info["config"]
    local = fetch_dataset(dataset)
    records = split_records(local, split, config["roi"], config["target"])
    rng = np.random.default_rng(seed)
    picks: list[int] = []
    for label in np.unique(records.labels):  # alternate the classes
        members = list(rng.permutation(np.flatnonzero(records.labels == label)))
        picks.extend(members[: max(1, n // len(np.unique(records.labels)))])
    picks = sorted(picks[:n])
    size = config["image_size"]
    images = np.stack(
        [
            np.asarray(
                Image.open(records.paths[i]).convert("L").resize((size, size), Image.BILINEAR), dtype=np.float32
            )[..., None]
            for i in picks
        ]
    )
    model = load_model(model_dir)
    maps, outputs = gradcam(model, images, config["backbone"])
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for k, i in enumerate(picks):
        row = records.rows[i]
        name = Path(records.paths[i]).stem
        rgb = overlay(images[k, ..., 0], maps[k])
        Image.fromarray(rgb).save(out / "images" / f"{name}_gradcam.png")
        prob = float(outputs[k, 0]) if outputs.shape[-1] == 1 else float(1 - outputs[k, 0])
        rows.append(
            (
                name,
                row["disc"],
                info["classes"][int(records.labels[i])],
                prob,
                _png_data_uri(rgb),
                _png_data_uri(np.repeat(images[k].astype(np.uint8), 3, axis=-1)),
            )
        )
    page = out / "index.html"
    page.write_text(_html(rows, config, info), encoding="utf-8")
    return page


def _html(rows: list[tuple], config: dict, info: dict) -> str:
    cells = "\n".join(
        f"<figure><img src='{src}' alt='input {html.escape(name)}'><img src='{cam}' alt='Grad-CAM {html.escape(name)}'>"
        f"<figcaption>{html.escape(name)} ({html.escape(disc)})<br>true: {html.escape(true)}; "
        f"P(abnormal) = {prob:.2f}</figcaption></figure>"
        for name, disc, true, prob, cam, src in rows
    )
    title = f"Grad-CAM: {config['backbone']} {config['mode']} {'ROI' if config['roi'] else 'full image'}"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:1.5em}} figure{{display:inline-block;margin:.5em;text-align:center}}
img{{width:160px;height:160px;image-rendering:pixelated;margin:1px}} figcaption{{font-size:.85em}}</style></head>
<body><h1>{html.escape(title)}</h1>
<p>Heat maps from layer {html.escape(BACKBONES[config["backbone"]].gradcam_layer)} for the predicted class
(red: evidence for it). Weights: {html.escape(str(config["weights"]))}; best epoch {info["best_epoch"]};
dataset version {html.escape(str(info.get("dataset_version")))}.</p>
{cells}
</body></html>
"""
