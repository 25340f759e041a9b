"""Evaluation with the paper's metrics, ROC-AUC, confusion matrix and per-disc results.

Abnormal is the positive class (the paper's Equations 4-7)::

    accuracy  = (TP + TN) / (TP + TN + FP + FN)
    precision = TP / (TP + FP)
    recall    = TP / (TP + FN)
    F1        = 2 * precision * recall / (precision + recall)

The paper's improvement rate (Equation 8) is ``(new - old) / old * 100``. For the four-class
``disc_state`` target the class metrics are macro averages, and the binary metrics are also
reported with abnormal = any state but normal.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lumbar.selection import DISC_LEVELS, DISCS


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


def roc_auc(y_true: np.ndarray, score: np.ndarray) -> float | None:
    """Area under the ROC curve (the Mann-Whitney statistic, ties counted half); None with one class only."""
    y_true = np.asarray(y_true).astype(bool)
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
    order = np.argsort(-score, kind="mergesort")
    sorted_scores, sorted_true = score[order], y_true[order]
    distinct = np.r_[np.where(np.diff(sorted_scores))[0], len(score) - 1]
    tps = np.cumsum(sorted_true)[distinct]
    fps = (distinct + 1) - tps
    p, n = max(y_true.sum(), 1), max((~y_true).sum(), 1)
    return np.r_[0.0, fps / n], np.r_[0.0, tps / p]


def binary_metrics(y_true: np.ndarray, y_prob: np.ndarray, threshold: float = 0.5) -> dict[str, Any]:
    """Accuracy, precision, recall, F1 (abnormal positive), ROC-AUC and the confusion ``[[TN, FP], [FN, TP]]``."""
    y_true = np.asarray(y_true).astype(int)
    y_pred = (np.asarray(y_prob) >= threshold).astype(int)
    tp = int(((y_pred == 1) & (y_true == 1)).sum())
    tn = int(((y_pred == 0) & (y_true == 0)).sum())
    fp = int(((y_pred == 1) & (y_true == 0)).sum())
    fn = int(((y_pred == 0) & (y_true == 1)).sum())
    precision, recall = _safe(tp, tp + fp), _safe(tp, tp + fn)
    return {
        "accuracy": _safe(tp + tn, len(y_true)),
        "precision": precision,
        "recall": recall,
        "f1": _safe(2 * precision * recall, precision + recall),
        "roc_auc": roc_auc(y_true, np.asarray(y_prob, dtype=float)),
        "confusion": [[tn, fp], [fn, tp]],
        "support": len(y_true),
    }


def multiclass_metrics(y_true: np.ndarray, y_prob: np.ndarray, num_classes: int) -> dict[str, Any]:
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
        "confusion": confusion.tolist(),
        "support": len(y_true),
    }


@dataclass
class Evaluation:
    """The evaluation of one model on one split."""

    split: str
    metrics: dict[str, Any]
    per_disc: dict[str, dict[str, Any]]
    y_true: list[int] = field(default_factory=list)
    y_score: list[float] = field(default_factory=list)
    out_dir: Path | None = None

    def summary(self) -> dict[str, float]:
        """The scalar metrics (for MLflow and the KFP Metrics artifact)."""
        return {k: float(v) for k, v in self.metrics.items() if isinstance(v, (int, float)) and v is not None}


def evaluate_model(
    model_dir: str | Path,
    dataset: str | Path,
    split: str = "test",
    out_dir: str | Path | None = None,
    track: bool = True,
    batch_size: int = 32,
) -> Evaluation:
    """Evaluate a trained model on a split; write ``metrics.json``, ``confusion.png``, ``roc.png``; log to MLflow.

    The metrics go to the model's own MLflow run (prefixed ``<split>_``) when it has one.
    """
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
    binary = config["target"] == "binary"
    if binary:
        score = output.reshape(-1)
        metrics = binary_metrics(records.labels, score)
        abnormal = records.labels
    else:
        metrics = multiclass_metrics(records.labels, output, output.shape[1])
        score = 1.0 - output[:, 0]
        abnormal = (records.labels != 0).astype(int)
        metrics["binary"] = binary_metrics(abnormal, score)
    per_disc = {}
    discs = np.asarray([r.get("disc", "") for r in records.rows])
    for disc in DISCS:
        mask = discs == disc
        if mask.any():
            per_disc[DISC_LEVELS[disc]] = binary_metrics(abnormal[mask], score[mask])
    result = Evaluation(split, metrics, per_disc, [int(v) for v in abnormal], [float(v) for v in score])
    out = Path(out_dir) if out_dir else Path(model_dir) / f"eval-{split}"
    out.mkdir(parents=True, exist_ok=True)
    payload = {
        "split": split,
        "dataset": str(dataset),
        "metrics": metrics,
        "per_disc": per_disc,
        "predictions": [
            {"image": r["image_path"], "disc": r.get("disc", ""), "true": int(t), "score": float(s)}
            for r, t, s in zip(records.rows, abnormal, score, strict=True)
        ],
    }
    (out / "metrics.json").write_text(json.dumps(payload, indent=2))
    plot_confusion(metrics["confusion"], info["classes"], out / "confusion.png")
    plot_roc(abnormal, score, out / "roc.png")
    result.out_dir = out
    if track and info.get("run_id"):
        from lumbar.tracking import Tracker

        tracker = Tracker.for_run(info["run_id"])
        run = tracker.attach(info["run_id"])
        run.log_metrics({f"{split}_{k}": v for k, v in result.summary().items() if k != "support"})
        for name in ("metrics.json", "confusion.png", "roc.png"):
            run.log_artifact(out / name, f"eval-{split}")
    return result


def plot_confusion(confusion: list[list[int]], classes: list[str], path: Path) -> None:
    """Confusion matrix as a PNG (rows: true class, columns: predicted)."""
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


def plot_roc(y_true: np.ndarray, score: np.ndarray, path: Path) -> None:
    """ROC curve (abnormal positive) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fpr, tpr = roc_curve(np.asarray(y_true), np.asarray(score))
    auc = roc_auc(np.asarray(y_true), np.asarray(score))
    fig, ax = plt.subplots(figsize=(3.8, 3.6))
    ax.plot(fpr, tpr, marker=".", label=f"AUC {auc:.3f}" if auc is not None else "AUC undefined")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
