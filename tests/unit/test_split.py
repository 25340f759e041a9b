from collections import Counter

import numpy as np
import pytest

from lumbar.split import stratified_assign


def test_proportions_and_strata():
    rng = np.random.default_rng(1)
    keys = [f"k{i}" for i in range(400)]
    strata = list(rng.integers(0, 2, size=400))
    assignment = stratified_assign(keys, strata, (0.75, 0.15, 0.10), seed=5)
    sizes = Counter(assignment.values())
    assert sizes == {"train": 300, "val": 60, "test": 40}
    overall = np.mean(strata)
    for split in ("train", "val", "test"):
        members = [s for k, s in zip(keys, strata, strict=True) if assignment[k] == split]
        assert abs(np.mean(members) - overall) < 0.03


def test_seeded_and_deterministic():
    keys, strata = list(range(50)), [i % 3 for i in range(50)]
    a = stratified_assign(keys, strata, seed=1)
    assert a == stratified_assign(keys, strata, seed=1)
    assert a != stratified_assign(keys, strata, seed=2)


def test_bad_arguments():
    with pytest.raises(ValueError):
        stratified_assign([1, 2], [0])
    with pytest.raises(ValueError):
        stratified_assign([1, 2], [0, 1], fractions=(0.5, 0.6, -0.1))
    with pytest.raises(ValueError):
        stratified_assign([1, 1], [0, 1])
