"""Evaluation with the paper's metrics, ROC-AUC, confusion matrix and per-disc results, in both positive views.

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

Keys: ``<view>_<metric>`` (``normal_f1``, ``abnormal_recall``, ...) for both views, ``<view>_roc_auc`` and
``<view>_positives`` (how many test images are of that class), and the plain names (``f1``, ...) for the
chosen view. The confusion matrix is indexed by class (rows true, columns predicted, in :data:`CLASSES`
order), so it is the same in both views. The paper's improvement rate (Equation 8) is
``(new - old) / old * 100``. For the four-class ``disc_state`` target the plain metrics are macro averages,
and both binary views are recorded with abnormal = any state but normal.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lumbar.errors import InputError
from lumbar.selection import DISC_LEVELS, DISCS

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


def confusion_matrix(metrics: Mapping[str, Any]) -> tuple[list[str], list[list[int]]]:
    """``(classes, matrix)`` of an evaluation's confusion matrix (also from files written before it was labelled)."""
    confusion = metrics["confusion"]
    if isinstance(confusion, Mapping):
        return list(confusion["classes"]), [list(map(int, row)) for row in confusion["matrix"]]
    matrix = [list(map(int, row)) for row in confusion]
    return (list(CLASSES) if len(matrix) == 2 else [str(c) for c in range(len(matrix))]), matrix


@dataclass
class Evaluation:
    """The evaluation of one model on one split.

    ``y_true`` (1 = abnormal) and ``y_score`` (probability of abnormal) are in the abnormal view; see
    :func:`view_scores` for the other.
    """

    split: str
    metrics: dict[str, Any]
    per_disc: dict[str, dict[str, Any]]
    y_true: list[int] = field(default_factory=list)
    y_score: list[float] = field(default_factory=list)
    out_dir: Path | None = None

    def summary(self) -> dict[str, float]:
        """The scalar metrics of both views (for MLflow and the KFP Metrics artifact)."""
        return {
            k: float(v)
            for k, v in self.metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v is not None
        }


def evaluate_model(
    model_dir: str | Path,
    dataset: str | Path,
    split: str = "test",
    out_dir: str | Path | None = None,
    track: bool = True,
    batch_size: int = 32,
    positive: str = DEFAULT_POSITIVE,
) -> Evaluation:
    """Evaluate a trained model on a split; write ``metrics.json``, ``confusion.png``, ``roc.png``; log to MLflow.

    Both positive views are computed and recorded; ``positive`` chooses the one under the plain names.
    The metrics go to the model's own MLflow run (prefixed ``<split>_``) when it has one, with the chosen
    view as the tag ``lumbar.positive``.

    Raises:
        InputError: For an unknown ``positive`` (or split, or an unusable dataset).
    """
    check_positive(positive)
    from lumbar.data import InputConfig, make_dataset, split_records
    from lumbar.models import load_model
    from lumbar.train import read_model_info
    from lumbar.versions import fetch_dataset

    info = read_model_info(model_dir)
    config = info["config"]
    local = fetch_dataset(dataset)
    records = split_records(local, split, config["roi"], config["target"])
    inputs = InputConfig(
        image_size=config["image_size"],
        batch_size=batch_size,
        roi=config["roi"],
        target=config["target"],
        augment=False,
    )
    model = load_model(model_dir)
    output = np.asarray(model.predict(make_dataset(local, split, inputs, records=records), verbose=0), dtype=float)
    if config["target"] == "binary":
        score = output.reshape(-1)
        abnormal = records.labels
        metrics = binary_metrics(abnormal, score, positive=positive)
    else:
        score = 1.0 - output[:, 0]
        abnormal = (records.labels != 0).astype(int)
        metrics = multiclass_metrics(records.labels, output, output.shape[1], info.get("classes"))
        binary = binary_metrics(abnormal, score, positive=positive)
        metrics["binary"] = binary
        metrics.update({k: v for k, v in binary.items() if k.startswith(tuple(f"{p}_" for p in POSITIVES))})
        metrics["positive"] = positive
    per_disc = {}
    discs = np.asarray([r.get("disc", "") for r in records.rows])
    for disc in DISCS:
        mask = discs == disc
        if mask.any():
            per_disc[DISC_LEVELS[disc]] = binary_metrics(abnormal[mask], score[mask], positive=positive)
    result = Evaluation(split, metrics, per_disc, [int(v) for v in abnormal], [float(v) for v in score])
    out = Path(out_dir) if out_dir else Path(model_dir) / f"eval-{split}"
    out.mkdir(parents=True, exist_ok=True)
    payload = {
        "split": split,
        "dataset": str(dataset),
        "positive": positive,
        "metrics": metrics,
        "per_disc": per_disc,
        "predictions": [
            {
                "image": r["image_path"],
                "disc": r.get("disc", ""),
                "class": CLASSES[int(t)],
                "true": int(t),
                "score": float(s),
            }
            for r, t, s in zip(records.rows, abnormal, score, strict=True)
        ],
    }
    (out / "metrics.json").write_text(json.dumps(payload, indent=2))
    plot_confusion(*confusion_matrix(metrics), out / "confusion.png")
    plot_roc(abnormal, score, out / "roc.png")
    result.out_dir = out
    if track and info.get("run_id"):
        from lumbar.tracking import Tracker

        tracker = Tracker.for_run(info["run_id"])
        run = tracker.attach(info["run_id"])
        run.log_metrics({f"{split}_{k}": v for k, v in result.summary().items()})
        run.set_tags({"lumbar.positive": positive})
        for name in ("metrics.json", "confusion.png", "roc.png"):
            run.log_artifact(out / name, f"eval-{split}")
    return result


def plot_confusion(classes: Sequence[str], confusion: Sequence[Sequence[int]], path: Path) -> None:
    """Confusion matrix as a PNG, labelled with the class names (rows: true class, columns: predicted)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = np.asarray(confusion)
    fig, ax = plt.subplots(figsize=(3.6 + 0.4 * len(classes), 3.2 + 0.3 * len(classes)))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=30, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(j, i, str(value), ha="center", va="center", color="white" if value > matrix.max() / 2 else "black")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_roc(y_abnormal: Any, score_abnormal: Any, path: Path) -> None:
    """ROC curves as a PNG: one panel per positive view (abnormal, then normal)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(POSITIVES), figsize=(3.8 * len(POSITIVES), 3.6), squeeze=False)
    for ax, positive in zip(axes[0], POSITIVES, strict=True):
        y, s = view_scores(y_abnormal, score_abnormal, positive)
        fpr, tpr = roc_curve(y, s)
        auc = roc_auc(y, s)
        ax.plot(fpr, tpr, marker=".", label=f"AUC {auc:.3f}" if auc is not None else "AUC undefined")
        ax.plot([0, 1], [0, 1], linestyle="--", color="grey")
        ax.set_title(f"{positive} positive")
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
