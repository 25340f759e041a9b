"""Evaluation with the paper's metrics, ROC-AUC, confusion matrix and per-disc results, in both positive views.

Every metric and formula (both positive views, ROC-AUC, the confusion matrix, the paper's Equations 4-8) is
defined once in :mod:`lumbar.metrics`; this module applies them to a trained model's predictions and records
the result (``metrics.json``, plots, MLflow). For the four-class ``disc_state`` target the plain metrics are
macro averages, and both binary views are recorded with abnormal = any state but normal; the ``pfirrmann``
target adds balanced accuracy, linearly weighted kappa and the share off by more than one grade, each with
its 95 % interval (patients resampled), and its binary views count grade 3 or more as abnormal.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lumbar.metrics import (
    CLASSES,
    DEFAULT_POSITIVE,
    POSITIVES,
    binary_metrics,
    check_positive,
    confusion_matrix,
    multiclass_metrics,
    ordinal_intervals,
    ordinal_metrics,
    roc_auc,
    roc_curve,
    view_scores,
)
from lumbar.selection import DISC_LEVELS, DISCS

#: Images per prediction batch: inference only, so any size gives the same numbers.
EVAL_BATCH_SIZE = 32


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
    batch_size: int = EVAL_BATCH_SIZE,
    positive: str = DEFAULT_POSITIVE,
) -> Evaluation:
    """Evaluate a trained model on a split; write ``metrics.json``, ``confusion.png``, ``roc.png``; log to MLflow.

    Both positive views are computed and recorded; ``positive`` chooses the one under the plain names.
    The metrics go to the model's own MLflow run (prefixed ``<split>_``) when it has one, with the chosen
    view as the tag ``lumbar.positive``. Evaluating the test split also scores the validation patients
    (``selection`` in ``metrics.json``, ``selection_*`` in MLflow), the numbers on which configurations are
    compared and chosen.

    Raises:
        InputError: For an unknown ``positive`` (or split, or an unusable dataset).
    """
    check_positive(positive)
    from lumbar.models import load_model, read_model_info
    from lumbar.versions import fetch_dataset

    info = read_model_info(model_dir)
    config = info["config"]
    local = fetch_dataset(dataset)
    model = load_model(model_dir)
    records, output, abnormal, score = _predict(model, local, split, config, batch_size)
    if config["target"] == "binary":
        metrics = binary_metrics(abnormal, score, positive=positive)
    else:
        metrics = multiclass_metrics(records.labels, output, output.shape[1], info.get("classes"))
        if config["target"] == "pfirrmann":
            metrics.update(ordinal_metrics(records.labels, output))
            # patients resampled, not discs: a spine's discs are not independent (no patient column: each disc)
            patients = [r.get("patient") or r["image_path"] for r in records.rows]
            metrics["ordinal_intervals"] = ordinal_intervals(records.labels, output, patients)
        binary = binary_metrics(abnormal, score, positive=positive)
        metrics["binary"] = binary
        metrics.update({k: v for k, v in binary.items() if k.startswith(tuple(f"{p}_" for p in POSITIVES))})
        metrics["positive"] = positive
    selection = _selection(model, local, split, config, batch_size)
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
        "selection": selection,
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
        if selection:
            run.log_metrics(
                {f"{SELECTION_PREFIX}{k}": selection[k] for k in SELECTION_METRICS if selection[k] is not None}
            )
        run.set_tags({"lumbar.positive": positive})
        for name in ("metrics.json", "confusion.png", "roc.png"):
            run.log_artifact(out / name, f"eval-{split}")
    return result


#: The split a configuration is chosen on, and the MLflow names of its numbers (``selection_roc_auc`` ...):
#: not ``val_*``, which Keras uses for the per-epoch validation curves of the same run.
SELECTION_SPLIT = "val"
SELECTION_PREFIX = "selection_"
SELECTION_METRICS = ("roc_auc", "abnormal_f1", "support")


def _predict(model: Any, local: Path, split: str, config: dict[str, Any], batch_size: int) -> tuple[Any, ...]:
    """A split's labelled records, the model's raw outputs, and the abnormal view's labels and scores."""
    from lumbar.data import ABNORMAL_FROM, InputConfig, abnormal_probability, make_dataset, split_records

    records = split_records(local, split, config["roi"], config["target"])
    inputs = InputConfig(
        image_size=config["image_size"],
        batch_size=batch_size,
        roi=config["roi"],
        target=config["target"],
        augment=False,
    )
    output = np.asarray(model.predict(make_dataset(local, split, inputs, records=records), verbose=0), dtype=float)
    abnormal = (records.labels >= ABNORMAL_FROM[config["target"]]).astype(int)  # the binary view's labels
    return records, output, abnormal, abnormal_probability(output, config["target"])


def _selection(model: Any, local: Path, split: str, config: dict[str, Any], batch_size: int) -> dict[str, Any]:
    """The model's ROC-AUC and F1 (abnormal positive) on the validation patients.

    Configurations are compared and chosen on these numbers, never on the test split. Empty when evaluating
    the validation split itself or a whole dataset (``all``: an external test set), or when the dataset has
    no labelled validation image.
    """
    from lumbar.data import ALL
    from lumbar.errors import InputError

    if split in (SELECTION_SPLIT, ALL):
        return {}
    try:
        _, _, abnormal, score = _predict(model, local, SELECTION_SPLIT, config, batch_size)
    except InputError:
        return {}
    binary = binary_metrics(abnormal, score, positive="abnormal")
    return {
        "split": SELECTION_SPLIT,
        "roc_auc": roc_auc(abnormal, score),
        "abnormal_f1": binary["abnormal_f1"],
        "support": len(abnormal),
    }


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
