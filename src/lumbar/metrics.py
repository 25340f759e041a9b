"""The metrics registry and the paper's formulas: one definition of each metric, used by every layer above.

A binary disc is ``normal`` (label 0) or ``abnormal`` (label 1). Precision, recall and F1 depend on which
class is called positive, so every evaluation records both views:

* ``abnormal`` positive, the clinical convention and this project's default (``--positive``);
* ``normal`` positive, the paper's convention (its printed metrics fit integer confusion matrices with
  about 60 % positives, the share of normal discs; see ``lumbar paper audit``). Every table that stands
  beside a paper number uses this view.

The metrics are one registry, :data:`METRICS` (name, column title, formula on the counts of one view),
after the paper's Equations 4-7::

    accuracy  = (TP + TN) / (TP + TN + FP + FN)
    precision = TP / (TP + FP)
    recall    = TP / (TP + FN)
    F1        = 2 * precision * recall / (precision + recall)

Adding a metric is one :class:`Metric` entry here: evaluation keys, MLflow metrics, the evaluate step's
row, the comparison tables' columns and the CLI's printout all iterate :data:`METRICS`.

Keys: ``<view>_<metric>`` (``normal_f1``, ``abnormal_recall``, ...) for both views, ``<view>_roc_auc`` and
``<view>_positives`` (how many test images are of that class), and the plain names (``f1``, ...) for the
chosen view. The confusion matrix is indexed by class (rows true, columns predicted, in :data:`CLASSES`
order), so it is the same in both views. The paper's improvement rate (Equation 8) is
``(new - old) / old * 100``. This module needs only NumPy: it sits at the bottom of the layer order.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lumbar.errors import InputError

#: The binary classes in label order (0, 1).
CLASSES: tuple[str, ...] = ("normal", "abnormal")
#: The positive-class choices; the first is the default (the clinical convention).
POSITIVES: tuple[str, ...] = ("abnormal", "normal")
DEFAULT_POSITIVE = POSITIVES[0]


def improvement_rate(new: float, old: float) -> float:
    """The paper's Equation 8: ``(new - old) / old * 100``.

    Raises:
        ValueError: If ``old`` is zero (the rate is undefined).
    """
    if old == 0:
        raise ValueError("the improvement rate is undefined when the old value is 0")
    return (new - old) / old * 100.0


def _safe(numerator: float, denominator: float) -> float:
    return float(numerator / denominator) if denominator else 0.0


def check_positive(positive: str) -> str:
    """Return ``positive`` when it is one of :data:`POSITIVES`.

    Raises:
        InputError: Naming the field and the choices.
    """
    if positive not in POSITIVES:
        raise InputError(f"positive must be one of {', '.join(POSITIVES)}, got {positive!r}")
    return positive


@dataclass(frozen=True)
class Counts:
    """The four counts of one positive view."""

    tp: int
    fp: int
    fn: int
    tn: int

    @property
    def n(self) -> int:
        """Images counted."""
        return self.tp + self.fp + self.fn + self.tn

    @property
    def positives(self) -> int:
        """Images whose true class is the positive one."""
        return self.tp + self.fn

    @classmethod
    def from_confusion(cls, matrix: Any, positive: str) -> Counts:
        """The counts of one view from the class-indexed 2 x 2 matrix (rows true, columns predicted)."""
        m = np.asarray(matrix, dtype=int)
        p = CLASSES.index(check_positive(positive))
        q = 1 - p
        return cls(tp=int(m[p, p]), fp=int(m[q, p]), fn=int(m[p, q]), tn=int(m[q, q]))


def _precision(c: Counts) -> float:
    return _safe(c.tp, c.tp + c.fp)


def _recall(c: Counts) -> float:
    return _safe(c.tp, c.tp + c.fn)


def _f1(c: Counts) -> float:
    return _safe(2 * c.tp, 2 * c.tp + c.fp + c.fn)  # = 2PR / (P + R), 0 when undefined


@dataclass(frozen=True)
class Metric:
    """One of the paper's metrics: its key, its column title, and its formula on a view's counts."""

    name: str
    title: str
    compute: Callable[[Counts], float]


#: The paper's four metrics (Equations 4-7), in the order of its tables.
METRICS: tuple[Metric, ...] = (
    Metric("accuracy", "Accuracy", lambda c: _safe(c.tp + c.tn, c.n)),
    Metric("precision", "Precision", _precision),
    Metric("recall", "Recall", _recall),
    Metric("f1", "F1", _f1),
)
METRIC_NAMES: tuple[str, ...] = tuple(m.name for m in METRICS)


def view_key(positive: str, metric: str) -> str:
    """The key of a metric in one positive view: ``normal_f1``, ``abnormal_precision``, ..."""
    return f"{positive}_{metric}"


def view_metrics(counts: Counts) -> dict[str, float]:
    """The four metrics of one view, keyed by name."""
    return {m.name: m.compute(counts) for m in METRICS}


def wilson_interval(successes: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """The Wilson score interval of a proportion (95 % by default), as fractions; ``(0, 1)`` when ``n`` is 0."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def majority_f1(n: int, positives: int) -> float:
    """F1 of always predicting the majority class, with ``positives`` of ``n`` images in the positive class.

    When the positive class is the majority (ties count as such, the stricter baseline) the F1 is
    ``2p / (1 + p)`` with ``p = positives / n``; otherwise nothing is predicted positive and F1 is 0.
    """
    if n <= 0 or 2 * positives < n:
        return 0.0
    p = positives / n
    return 2 * p / (1 + p)


def roc_auc(y_true: np.ndarray, score: np.ndarray) -> float | None:
    """Area under the ROC curve (the Mann-Whitney statistic, ties counted half); None with one class only."""
    y_true = np.asarray(y_true).astype(bool)
    score = np.asarray(score, dtype=float)
    positives, negatives = score[y_true], score[~y_true]
    if len(positives) == 0 or len(negatives) == 0:
        return None
    order = np.argsort(np.concatenate([positives, negatives]), kind="mergesort")
    ranks = np.empty(len(order), dtype=float)
    values = np.concatenate([positives, negatives])[order]
    ranks[order] = np.arange(1, len(order) + 1)
    # average the ranks of ties
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks[order])
    ranks[order] = (sums / counts)[inverse]
    u = ranks[: len(positives)].sum() - len(positives) * (len(positives) + 1) / 2
    return float(u / (len(positives) * len(negatives)))


def roc_curve(y_true: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """False and true positive rates at every distinct threshold (from (0, 0) to (1, 1))."""
    y_true = np.asarray(y_true).astype(bool)
    score = np.asarray(score, dtype=float)
    order = np.argsort(-score, kind="mergesort")
    sorted_scores, sorted_true = score[order], y_true[order]
    distinct = np.r_[np.where(np.diff(sorted_scores))[0], len(score) - 1]
    tps = np.cumsum(sorted_true)[distinct]
    fps = (distinct + 1) - tps
    p, n = max(y_true.sum(), 1), max((~y_true).sum(), 1)
    return np.r_[0.0, fps / n], np.r_[0.0, tps / p]


def roc_points(y_true: Sequence[int], score: Sequence[float], limit: int = 200) -> tuple[list, list, list]:
    """ROC curve points ``(fpr, tpr, threshold)``, thinned to at most ``limit`` points (for artifact metadata).

    The thresholds are :func:`roc_curve`'s: above every score first (written as ``1 + 1e-9``), then each
    distinct score, descending.
    """
    s = np.asarray(score, dtype=float)
    fpr, tpr = roc_curve(np.asarray(y_true), s)
    thresholds = np.r_[np.inf, np.unique(s)[::-1]]
    keep = np.unique(np.linspace(0, len(thresholds) - 1, min(limit, len(thresholds))).round().astype(int))
    finite = np.where(np.isfinite(thresholds[keep]), thresholds[keep], 1.0 + 1e-9)
    return fpr[keep].tolist(), tpr[keep].tolist(), finite.tolist()


def view_scores(y_abnormal: Any, score_abnormal: Any, positive: str) -> tuple[np.ndarray, np.ndarray]:
    """Truth (1 = positive) and score (probability of the positive class) in one view."""
    y = np.asarray(y_abnormal).astype(int)
    s = np.asarray(score_abnormal, dtype=float)
    return (y, s) if check_positive(positive) == "abnormal" else (1 - y, 1.0 - s)


def views_from_confusion(matrix: Any) -> dict[str, Any]:
    """Both views' metrics and positives from a class-indexed 2 x 2 confusion matrix (``<view>_<metric>`` keys)."""
    out: dict[str, Any] = {}
    for positive in POSITIVES:
        counts = Counts.from_confusion(matrix, positive)
        out.update({view_key(positive, k): v for k, v in view_metrics(counts).items()})
        out[view_key(positive, "positives")] = counts.positives
    return out


def binary_metrics(
    y_true: np.ndarray, y_prob: np.ndarray, threshold: float = 0.5, positive: str = DEFAULT_POSITIVE
) -> dict[str, Any]:
    """Both views' metrics of a binary classifier, and the chosen view's under the plain names.

    Args:
        y_true: True labels (1 = abnormal).
        y_prob: Predicted probability of abnormal; abnormal is predicted at ``>= threshold``.
        threshold: Decision threshold.
        positive: The view whose metrics also go under the plain names (``f1``, ...).

    Returns:
        ``<view>_<metric>``, ``<view>_roc_auc`` and ``<view>_positives`` for both views; ``accuracy``,
        ``precision``, ``recall``, ``f1``, ``roc_auc`` of the chosen view; ``positive``; ``confusion``
        (``classes`` and the class-indexed ``matrix``, rows true); ``support``.
    """
    check_positive(positive)
    y_true = np.asarray(y_true).astype(int)
    y_prob = np.asarray(y_prob, dtype=float)
    y_pred = (y_prob >= threshold).astype(int)
    matrix = np.zeros((2, 2), dtype=int)
    np.add.at(matrix, (y_true, y_pred), 1)
    out: dict[str, Any] = views_from_confusion(matrix)
    for view in POSITIVES:
        out[view_key(view, "roc_auc")] = roc_auc(*view_scores(y_true, y_prob, view))
    out.update({k: out[view_key(positive, k)] for k in (*METRIC_NAMES, "roc_auc")})
    out["positive"] = positive
    out["confusion"] = {"classes": list(CLASSES), "matrix": matrix.tolist()}
    out["support"] = len(y_true)
    return out


def multiclass_metrics(
    y_true: np.ndarray, y_prob: np.ndarray, num_classes: int, classes: Sequence[str] | None = None
) -> dict[str, Any]:
    """Accuracy, macro precision / recall / F1 and the confusion matrix (rows true, columns predicted)."""
    y_true = np.asarray(y_true).astype(int)
    y_pred = np.asarray(y_prob).argmax(axis=1)
    confusion = np.zeros((num_classes, num_classes), dtype=int)
    np.add.at(confusion, (y_true, y_pred), 1)
    precisions, recalls, f1s = [], [], []
    for c in range(num_classes):
        tp = confusion[c, c]
        p, r = _safe(tp, confusion[:, c].sum()), _safe(tp, confusion[c, :].sum())
        precisions.append(p)
        recalls.append(r)
        f1s.append(_safe(2 * p * r, p + r))
    return {
        "accuracy": _safe(np.trace(confusion), confusion.sum()),
        "precision": float(np.mean(precisions)),
        "recall": float(np.mean(recalls)),
        "f1": float(np.mean(f1s)),
        "confusion": {
            "classes": list(classes) if classes else [str(c) for c in range(num_classes)],
            "matrix": confusion.tolist(),
        },
        "support": len(y_true),
    }


#: Published Pfirrmann-grading results to read ours beside (cited, not reproduced here): automated grading at
#: scale and human agreement. Our intervals on a few hundred discs are far wider than theirs.
PFIRRMANN_REFERENCES: tuple[tuple[str, str], ...] = (
    (
        "SpineNet, external validation on 1,331 participants (McSweeney et al., Spine 2023)",
        "balanced accuracy 78 % (77-79), Cohen's kappa 0.68, 0.85 % of discs off by more than one grade",
    ),
    (
        "Human raters (Niemeyer et al., Investigative Radiology 2021)",
        "inter-rater kappa about 0.6, intra-rater about 0.8",
    ),
)


def ordinal_text(metrics: Mapping[str, Any], name: str, scale: float = 1.0, digits: int = 2) -> str:
    """One of :func:`ordinal_metrics`' numbers as text, with its interval when the evaluation has one."""
    text = f"{scale * metrics[name]:.{digits}f}"
    interval = (metrics.get("ordinal_intervals") or {}).get(name)
    if interval:
        text += f" ({scale * interval[0]:.{digits}f}-{scale * interval[1]:.{digits}f})"
    return text


def pfirrmann_lines(metrics: Mapping[str, Any], discs: int) -> list[str]:
    """An evaluation's agreement on Pfirrmann grades with its intervals, then the published references."""
    return [
        f"Pfirrmann grades on {discs} discs (95 % intervals, patients resampled): balanced accuracy "
        f"{ordinal_text(metrics, 'balanced_accuracy', 100, 1)} %, linearly weighted kappa "
        f"{ordinal_text(metrics, 'kappa_linear')}, {ordinal_text(metrics, 'off_by_more_than_one', 100, 1)} % of "
        "discs off by more than one grade",
        *(f"  published: {source}: {result}" for source, result in PFIRRMANN_REFERENCES),
        "  (other patients, scanners and graders: a comparison of scale, not a ranking)",
    ]


def ordinal_metrics(y_true: np.ndarray, y_prob: np.ndarray) -> dict[str, float]:
    """Agreement on an ordered scale (Pfirrmann grades), as disc-grading studies report it.

    * ``balanced_accuracy``: the mean recall over the grades present;
    * ``kappa_linear``: Cohen's kappa with linear weights ``|i - j| / (k - 1)``;
    * ``off_by_more_than_one``: the share of discs predicted more than one grade away.

    Args:
        y_true: Class indices (grade - 1).
        y_prob: Class probabilities, one column per grade.
    """
    y_true = np.asarray(y_true).astype(int)
    prob = np.asarray(y_prob, dtype=float)
    k = prob.shape[1]
    y_pred = prob.argmax(axis=1)
    confusion = np.zeros((k, k), dtype=float)
    np.add.at(confusion, (y_true, y_pred), 1)
    present = confusion.sum(axis=1) > 0
    recalls = np.diag(confusion)[present] / confusion.sum(axis=1)[present]
    n = confusion.sum()
    weights = np.abs(np.subtract.outer(np.arange(k), np.arange(k))) / (k - 1)
    expected = np.outer(confusion.sum(axis=1), confusion.sum(axis=0)) / n if n else confusion
    disagreement = _safe(float((weights * confusion).sum()), float((weights * expected).sum()))
    return {
        "balanced_accuracy": float(recalls.mean()) if recalls.size else 0.0,
        "kappa_linear": 1.0 - disagreement if n else 0.0,
        "off_by_more_than_one": _safe(float((np.abs(y_true - y_pred) > 1).sum()), len(y_true)),
    }


def patient_bootstrap(
    statistics: Callable[[np.ndarray], Mapping[str, float | None]],
    patients: Sequence[str],
    draws: int = 1000,
    seed: int = 0,
) -> dict[str, tuple[float, float]]:
    """95 % percentile intervals of statistics of per-disc results, resampling whole patients.

    A patient's discs are not independent (one spine, one scan, one grader), so the resampling unit is the
    patient: each draw picks as many patients as there are, with replacement, and takes all their discs.

    Args:
        statistics: The statistics of the drawn disc indices, by name (one call per draw; a value None when
            undefined on that draw: skipped).
        patients: The patient of each disc, in the order the indices refer to.
        draws: Resamples.
        seed: Random seed (fixed: the same data give the same interval).

    Returns:
        Name -> (low, high); (0.0, 1.0) for a statistic undefined on every draw.
    """
    rng = np.random.default_rng(seed)
    groups: dict[str, list[int]] = {}
    for i, patient in enumerate(patients):
        groups.setdefault(patient, []).append(i)
    members = [np.asarray(m, dtype=int) for m in groups.values()]
    values: dict[str, list[float]] = {}
    for _ in range(draws):
        pick = np.concatenate([members[j] for j in rng.integers(0, len(members), len(members))])
        for name, value in statistics(pick).items():
            kept = values.setdefault(name, [])
            if value is not None:
                kept.append(value)
    return {
        name: (float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))) if v else (0.0, 1.0)
        for name, v in values.items()
    }


def ordinal_intervals(y_true: np.ndarray, y_prob: np.ndarray, patients: Sequence[str]) -> dict[str, list[float]]:
    """:func:`ordinal_metrics`' 95 % intervals, by :func:`patient_bootstrap`."""
    y_true, prob = np.asarray(y_true).astype(int), np.asarray(y_prob, dtype=float)
    intervals = patient_bootstrap(lambda pick: ordinal_metrics(y_true[pick], prob[pick]), patients)
    return {name: list(interval) for name, interval in intervals.items()}


def confusion_matrix(metrics: Mapping[str, Any]) -> tuple[list[str], list[list[int]]]:
    """``(classes, matrix)`` of an evaluation's confusion matrix (also from files written before it was labelled)."""
    confusion = metrics["confusion"]
    if isinstance(confusion, Mapping):
        return list(confusion["classes"]), [list(map(int, row)) for row in confusion["matrix"]]
    matrix = [list(map(int, row)) for row in confusion]
    return (list(CLASSES) if len(matrix) == 2 else [str(c) for c in range(len(matrix))]), matrix
