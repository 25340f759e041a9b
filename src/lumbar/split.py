"""Seeded, stratified splitting into train / validation / test."""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np

SPLITS: tuple[str, ...] = ("train", "val", "test")


def stratified_assign(
    keys: Sequence[Hashable],
    strata: Sequence[Hashable],
    fractions: Sequence[float] = (0.75, 0.15, 0.10),
    names: Sequence[str] = SPLITS,
    seed: int = 0,
) -> dict[Hashable, str]:
    """Assign each key to a split so that every stratum is divided in the given proportions.

    Keys are shuffled with ``seed``, grouped by stratum, and dealt one by one to the split that is
    furthest below its target share; the running totals carry across strata, so both the overall
    sizes and each stratum's shares stay within one item of the target.

    Args:
        keys: The units to split (patients, or images).
        strata: The stratum of each key (for example its binary label).
        fractions: Target share of each split; must sum to 1.
        names: Split names, one per fraction.
        seed: Random seed.

    Returns:
        Split name per key.
    """
    if len(keys) != len(strata):
        raise ValueError("keys and strata must have the same length")
    if len(fractions) != len(names) or any(f < 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"split fractions must be non-negative, one per split and sum to 1, got {list(fractions)}")
    if len(set(keys)) != len(keys):
        raise ValueError("split keys must be unique")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(keys))
    stratum_rank = {s: i for i, s in enumerate(sorted({str(s) for s in strata}))}
    order = sorted(order, key=lambda i: stratum_rank[str(strata[i])])  # stable: shuffled within a stratum
    counts = np.zeros(len(names))
    target = np.asarray(fractions, dtype=float)
    assignment: dict[Hashable, str] = {}
    for seen, i in enumerate(order, start=1):
        deficit = target * seen - counts
        choice = int(np.argmax(deficit))  # ties go to the earlier (larger) split
        counts[choice] += 1
        assignment[keys[i]] = names[choice]
    return assignment
