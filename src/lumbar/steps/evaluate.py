"""The ``evaluate`` step: a trained model scored on one split, in both positive views."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lumbar.steps.options import tracking_enabled


@dataclass(frozen=True)
class Evaluation:
    """What an evaluate step writes into its ``Metrics`` and ``ClassificationMetrics`` artifacts.

    Attributes:
        metrics: The scalars (both views, and the chosen one under the plain names).
        row: The row a compare step reads (:func:`lumbar.compare.evaluation_row`).
        classes: The class names of the confusion matrix.
        confusion: The class-indexed matrix (rows true), the same in both views.
        roc: The ROC points ``(fpr, tpr, thresholds)`` of each positive view.
    """

    metrics: dict[str, float]
    row: dict[str, Any]
    classes: list[str]
    confusion: list[list[int]]
    roc: dict[str, tuple[list[float], list[float], list[float]]]


def evaluate_step(*, model: str | Path, dataset: str | Path, out: str | Path, split: str, positive: str) -> Evaluation:
    """Evaluate a trained model on a split; files go to ``out``, metrics to its MLflow run when tracked.

    Both positive views are recorded; ``positive`` (``abnormal`` or ``normal``) is the one under the plain
    metric names.
    """
    from lumbar.compare import evaluation_row
    from lumbar.evaluate import evaluate_model
    from lumbar.metrics import POSITIVES, confusion_matrix, roc_points, view_scores
    from lumbar.models import read_model_info

    info = read_model_info(model)
    tracked = tracking_enabled() and bool(info.get("run_id"))
    result = evaluate_model(model, dataset, split, out, track=tracked, positive=positive)
    classes, matrix = confusion_matrix(result.metrics)
    return Evaluation(
        metrics=result.summary(),
        row=evaluation_row(result.metrics, info),
        classes=classes,
        confusion=matrix,
        roc={p: roc_points(*view_scores(result.y_true, result.y_score, p)) for p in POSITIVES},
    )
