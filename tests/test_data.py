"""The tf.data input: decode, augmentation as Keras 2's ImageDataGenerator, seeding, class weights."""

import numpy as np
import pytest

from lumbar.data import InputConfig, class_weights, make_dataset, split_records
from lumbar.errors import InputError


def _first_batch(dataset):
    images, labels = next(iter(dataset))
    return images.numpy(), labels.numpy()


def test_plain_input_matches_the_files(built_dataset):
    from PIL import Image

    config = InputConfig(image_size=32, batch_size=4, augment=False)
    records = split_records(built_dataset, "val")
    images, labels = _first_batch(make_dataset(built_dataset, "val", config, records=records))
    assert images.shape == (4, 32, 32, 1) and images.dtype == np.float32
    expected = np.asarray(Image.open(records.paths[0]).resize((32, 32), Image.BILINEAR), dtype=np.float32)
    # the same picture, resized (the resamplers differ in detail, not in content)
    assert np.corrcoef(images[0, ..., 0].ravel(), expected.ravel())[0, 1] > 0.9
    assert labels.tolist() == records.labels[:4].tolist()


def test_augmentation_is_brightness_and_flips(built_dataset):
    plain = InputConfig(image_size=32, batch_size=8, augment=False, seed=1)
    augmented = InputConfig(image_size=32, batch_size=8, augment=True, seed=1)
    records = split_records(built_dataset, "train")
    # same seed, same shuffle: the augmented batch is the plain one flipped and darkened
    base, _ = _first_batch(make_dataset(built_dataset, "train", plain, training=True, records=records))
    aug, _ = _first_batch(make_dataset(built_dataset, "train", augmented, training=True, records=records))
    for original, changed in zip(base, aug, strict=True):
        candidates = [original, original[:, ::-1], original[::-1], original[::-1, ::-1]]
        factors = [changed.sum() / max(c.sum(), 1) for c in candidates]
        errors = [np.abs(changed - np.round(c * f)).max() for c, f in zip(candidates, factors, strict=True)]
        best = int(np.argmin(errors))
        assert errors[best] <= 1.0 and 0.1 - 0.01 <= factors[best] <= 0.7 + 0.01
    assert aug.max() <= 0.7 * 255 + 1


def test_seeded_and_new_each_epoch(built_dataset):
    config = InputConfig(image_size=32, batch_size=8, augment=True, seed=3)
    first = make_dataset(built_dataset, "train", config, training=True)
    again = make_dataset(built_dataset, "train", config, training=True)
    a, _ = _first_batch(first)
    np.testing.assert_array_equal(a, _first_batch(again)[0])  # same seed, same batches
    second_epoch, _ = _first_batch(first)
    assert not np.array_equal(a, second_epoch)  # a new shuffle and new augmentations each epoch


def test_class_weights_and_errors(built_dataset):
    weights = class_weights(np.array([0, 0, 0, 1]), 2)
    assert weights == {0: pytest.approx(4 / 6), 1: pytest.approx(2.0)}
    assert class_weights(np.array([0, 0]), 2)[1] == 1.0
    with pytest.raises(InputError, match="unknown split"):
        split_records(built_dataset, "holdout")
    with pytest.raises(InputError, match="brightness_range"):
        InputConfig(brightness_range=(0.0, 0.7))
