"""``tf.data`` input from a dataset's ``manifest.csv``.

Per split: parallel PNG decode, resize to the model size, cache after decode (as bytes), then
(training only) reshuffle each epoch, batch, apply the paper's augmentation batch-wise, and prefetch
with AUTOTUNE. The
augmentation reproduces Keras 2's ``ImageDataGenerator(brightness_range=[0.1, 0.7],
horizontal_flip=True, vertical_flip=True)``: every image is multiplied by a brightness factor drawn
uniformly from [0.1, 0.7] (as PIL's ``ImageEnhance.Brightness``), and flipped left-right and
up-down each with probability 0.5. Random numbers come from stateless ops seeded per batch and
drawn per image, so a seeded run is reproducible on the CPU while each epoch sees new augmentations.

Targets: ``binary`` (the paper's normal 0 / abnormal 1) or ``disc_state`` (four classes). Full images
or ROI images are chosen by one flag.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lumbar.dataset_c import read_manifest
from lumbar.errors import InputError, check_choice
from lumbar.profiles import PAPER_BATCH_SIZE, PAPER_IMAGE_SIZE

TARGETS: dict[str, int] = {"binary": 2, "disc_state": 4, "pfirrmann": 5}
#: The manifest column each target reads, and the value of its first class (Pfirrmann grades start at 1).
TARGET_FIELDS: dict[str, tuple[str, int]] = {
    "binary": ("label", 0),
    "disc_state": ("disc_state", 0),
    "pfirrmann": ("pfirrmann", 1),
}
#: Class names of each target, in class-index order.
TARGET_CLASSES: dict[str, tuple[str, ...]] = {
    "binary": ("normal", "abnormal"),
    "disc_state": ("normal", "degeneration", "bulge", "herniation"),
    "pfirrmann": ("grade 1", "grade 2", "grade 3", "grade 4", "grade 5"),
}
#: The first class index that counts as abnormal in a target's binary view (Pfirrmann 3 or more: degeneration).
ABNORMAL_FROM: dict[str, int] = {"binary": 1, "disc_state": 1, "pfirrmann": 2}


def abnormal_probability(output: np.ndarray, target: str) -> np.ndarray:
    """P(abnormal) per image from a model's outputs: the sigmoid itself, or the sum over the abnormal classes."""
    output = np.asarray(output, dtype=float)
    return output.reshape(-1) if target == "binary" else output[:, ABNORMAL_FROM[target] :].sum(axis=1)


#: Manifest columns training needs (Dataset C and Dataset A manifests both have them).
TRAINING_COLUMNS: tuple[str, ...] = ("image_path", "label", "split")
SPLITS: tuple[str, ...] = ("train", "val", "test")
#: Every labelled image of a dataset, whatever its split: an external test set (patients never trained on).
ALL = "all"


@dataclass(frozen=True)
class InputConfig:
    """How images are read and fed.

    Attributes:
        image_size: Side of the square model input, in pixels.
        batch_size: Images per batch.
        roi: Use the ROI crops instead of the full images.
        target: ``binary`` or ``disc_state``.
        augment: Apply the paper's augmentation to the training split.
        brightness_range: Range of the brightness factor (paper: 0.1-0.7).
        seed: Seed of shuffling and augmentation.
    """

    image_size: int = PAPER_IMAGE_SIZE
    batch_size: int = PAPER_BATCH_SIZE
    roi: bool = False
    target: str = "binary"
    augment: bool = True
    brightness_range: tuple[float, float] = (0.1, 0.7)
    seed: int = 0

    def __post_init__(self) -> None:
        check_choice("target", self.target, TARGETS)
        if self.image_size < 8 or self.batch_size < 1:
            raise InputError("image_size must be >= 8 and batch_size >= 1")
        low, high = self.brightness_range
        if not 0 < low <= high:
            raise InputError("brightness_range must be 0 < low <= high")


@dataclass(frozen=True)
class SplitRecords:
    """The labelled images of one split."""

    paths: list[str]
    labels: np.ndarray
    rows: list[dict]

    def targets(self, target: str) -> np.ndarray:
        """The labels as the loss reads them: float32 for ``binary``, int32 class indices otherwise."""
        return self.labels.astype("float32" if target == "binary" else "int32")


def split_records(dataset: str | Path, split: str, roi: bool = False, target: str = "binary") -> SplitRecords:
    """Return the labelled images of a split (absolute paths) and their targets.

    Raises:
        InputError: If the split has no labelled image, or ROI images are asked for and missing.
    """
    check_choice("split", split, (*SPLITS, ALL))
    check_choice("target", target, TARGETS)
    root = Path(dataset)
    rows = [r for r in read_manifest(root, TRAINING_COLUMNS) if r["label"] != "" and split in (ALL, r["split"])]
    if not rows:
        raise InputError(f"dataset {root} has no labelled images in split {split!r}")
    column = "roi_path" if roi else "image_path"
    missing = [r for r in rows if not r[column]]
    if missing:
        raise InputError(
            f"dataset {root}: {len(missing)} {split} row(s) have no {column} (first: {missing[0]['patient']}"
            f"_{missing[0]['item']})"
        )
    field, first = TARGET_FIELDS[target]
    if any(field not in r for r in rows[:1]):
        raise InputError(f"dataset {root} has no {field} column; use --target binary")
    try:
        labels = np.asarray([int(r[field]) - first for r in rows], dtype=np.int32)
    except ValueError:
        raise InputError(f"dataset {root}: a labelled row has no whole-number {field}") from None
    if labels.min() < 0 or labels.max() >= TARGETS[target]:
        raise InputError(
            f"dataset {root}: {field} values lie outside the {TARGETS[target]} classes of --target {target}"
        )
    return SplitRecords([str(root / r[column]) for r in rows], labels, rows)


def class_weights(labels: np.ndarray, num_classes: int) -> dict[int, float]:
    """Balanced class weights ``n / (k * n_c)`` from the training labels (absent classes get weight 1)."""
    counts = Counter(int(v) for v in labels)
    total = len(labels)
    return {c: (total / (num_classes * counts[c]) if counts[c] else 1.0) for c in range(num_classes)}


def _decode(path, size: int):  # type: ignore[no-untyped-def]
    import tensorflow as tf

    image = tf.io.decode_png(tf.io.read_file(path), channels=1)
    resized = tf.image.resize(image, (size, size), method="bilinear")
    return tf.cast(tf.clip_by_value(tf.round(resized), 0.0, 255.0), tf.uint8)  # cached as bytes: 4x less memory


def _flip_some(images, flip, axis: int):  # type: ignore[no-untyped-def]
    """Reverse the images whose ``flip`` flag is set along ``axis`` (1: rows, 2: columns)."""
    import tensorflow as tf

    batch = tf.shape(images)[0]
    if axis == 1:  # whole rows move: a batched gather of row indices is one fast copy
        size = tf.shape(images)[1]
        forward = tf.range(size)
        rows = tf.where(flip[:, None], size - 1 - forward[None, :], forward[None, :])
        return tf.gather(images, rows, axis=1, batch_dims=1)
    # columns: reverse the batch once and pick each image from the original or the reversed copy
    both = tf.concat([images, tf.reverse(images, axis=[axis])], axis=0)
    return tf.gather(both, tf.where(flip, tf.range(batch) + batch, tf.range(batch)))


def augment(images, seed, brightness_range: tuple[float, float] = (0.1, 0.7)):  # type: ignore[no-untyped-def]
    """The paper's augmentation on a batch of bytes ``(B, H, W, 1)``; returns float32 images.

    Each image is flipped left-right and up-down, each with probability 0.5, and multiplied by a
    brightness factor drawn from ``brightness_range`` (as PIL's ``ImageEnhance.Brightness``, rounded to
    whole grey levels). Randomness is stateless and drawn per image. Flips run on bytes, before the one
    conversion to float, which keeps later epochs fast.
    """
    import tensorflow as tf

    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=3)
    batch = tf.shape(images)[0]
    images = _flip_some(images, tf.random.stateless_uniform([batch], seeds[0]) < 0.5, axis=2)
    images = _flip_some(images, tf.random.stateless_uniform([batch], seeds[1]) < 0.5, axis=1)
    factor = tf.random.stateless_uniform([batch, 1, 1, 1], seeds[2], brightness_range[0], brightness_range[1])
    bright = tf.round(tf.cast(images, tf.float32) * factor)
    return bright if brightness_range[1] <= 1.0 else tf.minimum(bright, 255.0)  # darkening cannot overflow


def make_dataset(
    dataset: str | Path, split: str, config: InputConfig, training: bool = False, records: SplitRecords | None = None
):  # type: ignore[no-untyped-def]
    """Build the ``tf.data.Dataset`` of ``(image, target)`` batches for a split.

    Images are decoded and resized in parallel, cached as bytes after the first pass, then (training)
    reshuffled each epoch, batched, and augmented one batch at a time, with a new random draw per
    image and epoch.

    Args:
        dataset: Local dataset folder.
        split: ``train``, ``val`` or ``test``.
        config: Input settings.
        training: Shuffle each epoch and augment (for the training split).
        records: Pre-read records of the split (read from the manifest when None).
    """
    import tensorflow as tf

    records = records or split_records(dataset, split, config.roi, config.target)
    autotune = tf.data.AUTOTUNE
    ds = tf.data.Dataset.from_tensor_slices((records.paths, records.targets(config.target)))
    ds = ds.map(lambda p, y: (_decode(p, config.image_size), y), num_parallel_calls=autotune).cache()
    if training:
        ds = ds.shuffle(len(records.paths), seed=config.seed, reshuffle_each_iteration=True)
    ds = ds.batch(config.batch_size)
    if training and config.augment:
        seeds = tf.data.Dataset.random(seed=config.seed, rerandomize_each_iteration=True).batch(2)
        ds = tf.data.Dataset.zip((ds, seeds)).map(
            lambda xy, s: (augment(xy[0], s, config.brightness_range), xy[1]), num_parallel_calls=autotune
        )
    else:
        ds = ds.map(lambda x, y: (tf.cast(x, tf.float32), y), num_parallel_calls=autotune)
    return ds.prefetch(autotune)
