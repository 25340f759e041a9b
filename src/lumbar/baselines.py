"""One-feature baselines: what a disc's level alone, or its brightness alone, already tells.

On real discs the lower levels are abnormal far more often, and degenerated discs lose T2 signal; a
network that beats neither has not shown that it reads more of the image. Each baseline is one number
per disc and is *fitted on the training patients only*: the direction (does a larger value mean
abnormal?) and the threshold that maximises F1 there. Its ROC-AUC on the test discs needs no threshold
(one feature: any monotone model ranks the same); its F1 uses the training threshold.

* ``level``: the disc's position from the top (lower discs: larger), from the manifest's ``disc`` code;
* ``brightness``: the mean grey value of the disc's ROI image.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lumbar.errors import InputError
from lumbar.metrics import binary_metrics, patient_bootstrap, roc_auc

#: Disc codes from the top of the spine down (thoracic levels, then Dataset C's five lumbar ones).
LEVEL_ORDER: tuple[str, ...] = (
    *(f"T{n}{n + 1}" for n in range(1, 11)),
    "T1112",
    "T12L1",
    "L12",
    "L23",
    "L34",
    "L45",
    "L51",
)
BASELINES: tuple[str, ...] = ("level", "brightness")


@dataclass(frozen=True)
class Baseline:
    """A fitted one-feature baseline and its test metrics.

    Attributes:
        name: ``level`` or ``brightness``.
        sign: +1 when a larger feature means abnormal, -1 when a smaller one does (chosen on training).
        threshold: The feature value (times ``sign``) above which a disc is called abnormal.
        auc: ROC-AUC on the test discs (None with one class only).
        f1: F1 (abnormal positive) on the test discs at the training threshold.
        support: Test discs.
        auc_interval: 95 % bootstrap interval of the ROC-AUC (test discs resampled by patient).
        f1_interval: 95 % bootstrap interval of the F1, likewise.
    """

    name: str
    sign: int
    threshold: float
    auc: float | None
    f1: float
    support: int
    auc_interval: tuple[float, float] = (0.0, 1.0)
    f1_interval: tuple[float, float] = (0.0, 1.0)


def level_feature(row: Mapping[str, str], root: Path) -> float:
    """The disc's position from the top of the spine (L5-S1 the largest)."""
    try:
        return float(LEVEL_ORDER.index(row["disc"]))
    except ValueError:
        raise InputError(f"disc code {row['disc']!r} of {row['image_path']} is not a known level") from None


def brightness_feature(row: Mapping[str, str], root: Path) -> float:
    """The mean grey value of the disc's ROI image."""
    from PIL import Image

    with Image.open(root / row["roi_path"]) as image:
        return float(np.asarray(image.convert("L"), dtype=float).mean())


FEATURES: dict[str, Callable[[Mapping[str, str], Path], float]] = {
    "level": level_feature,
    "brightness": brightness_feature,
}


def _f1(predicted: np.ndarray, label: np.ndarray) -> float:
    """F1 of boolean predictions against 0/1 labels, abnormal positive (0 when neither has a positive)."""
    total = float(predicted.sum() + label.sum())
    return 2 * float(np.sum(predicted & (label == 1))) / total if total else 0.0


def fit(feature: np.ndarray, label: np.ndarray) -> tuple[int, float]:
    """Direction and threshold of a one-feature rule, chosen to maximise F1 (abnormal positive) on ``label``."""
    auc = roc_auc(label, feature)
    sign = 1 if auc is None or auc >= 0.5 else -1
    scored = sign * feature
    best, threshold = -1.0, float(np.min(scored)) - 1.0
    for candidate in np.unique(scored):
        f1 = _f1(scored >= candidate, label)
        if f1 > best:
            best, threshold = f1, float(candidate) - 1e-9
    return sign, threshold


def evaluate_baselines(dataset: str | Path, names: Sequence[str] = BASELINES, split: str = "test") -> list[Baseline]:
    """Fit each baseline on the training split of ``dataset`` and score it on ``split``.

    Raises:
        InputError: For an unknown baseline, or a dataset without labelled training and test discs.
    """
    from lumbar.dataset_c import read_manifest

    root = Path(dataset)
    unknown = [n for n in names if n not in FEATURES]
    if unknown:
        raise InputError(f"unknown baseline {unknown[0]!r}; choose from {', '.join(FEATURES)}")
    rows = [r for r in read_manifest(root, ("patient", "disc", "roi_path", "label", "split")) if r["label"] != ""]
    train = [r for r in rows if r["split"] == "train"]
    test = [r for r in rows if r["split"] == split]
    if not train or not test:
        raise InputError(f"dataset {root} needs labelled train and {split} discs for the baselines")
    results = []
    for name in names:
        feature = FEATURES[name]
        x_train = np.asarray([feature(r, root) for r in train])
        y_train = np.asarray([int(r["label"]) for r in train])
        sign, threshold = fit(x_train, y_train)
        x_test = sign * np.asarray([feature(r, root) for r in test])
        y_test = np.asarray([int(r["label"]) for r in test])
        predicted = (x_test > threshold).astype(float)
        metrics = binary_metrics(y_test, predicted, threshold=0.5)
        patients = [r["patient"] for r in test]
        auc_interval, f1_interval = bootstrap(y_test, x_test, predicted, patients)
        results.append(
            Baseline(
                name,
                sign,
                threshold,
                roc_auc(y_test, x_test),
                metrics["abnormal_f1"],
                len(test),
                auc_interval,
                f1_interval,
            )
        )
    return results


def bootstrap(
    label: np.ndarray,
    score: np.ndarray,
    predicted: np.ndarray,
    patients: Sequence[str],
    draws: int = 1000,
    seed: int = 0,
) -> tuple[tuple[float, float], tuple[float, float]]:
    """95 % intervals of ROC-AUC and F1, resampling whole patients (:func:`lumbar.metrics.patient_bootstrap`)."""
    intervals = patient_bootstrap(
        lambda pick: {"auc": roc_auc(label[pick], score[pick]), "f1": _f1(predicted[pick] == 1, label[pick])},
        patients,
        draws,
        seed,
    )
    return intervals["auc"], intervals["f1"]


@dataclass(frozen=True)
class ModelScore:
    """A trained configuration's test numbers, beside which the baselines are read.

    Attributes:
        procedure: ``procedure1`` ...
        label: The configuration (``vgg16-finetune-roi (imagenet)``).
        auc: ROC-AUC (abnormal positive) on the test discs.
        auc_interval: Its 95 % bootstrap interval over the test patients.
        f1: F1 (abnormal positive).
        majority_f1: F1 of always answering the majority class on the same discs (abnormal positive).
        support: Test discs.
        selection_auc: ROC-AUC on the validation patients, on which configurations are compared (None when the
            evaluation recorded none).
    """

    procedure: str
    label: str
    auc: float | None
    auc_interval: tuple[float, float]
    f1: float
    majority_f1: float
    support: int
    selection_auc: float | None = None


def model_score(
    procedure: str,
    label: str,
    true: Sequence[int],
    score: Sequence[float],
    patients: Sequence[str],
    f1: float,
    selection_auc: float | None = None,
) -> ModelScore:
    """A :class:`ModelScore` from an evaluation's per-disc predictions (``true`` 1 = abnormal)."""
    from lumbar.metrics import majority_f1

    y = np.asarray(true, dtype=int)
    s = np.asarray(score, dtype=float)
    auc_interval, _ = bootstrap(y, s, (s >= 0.5).astype(float), patients)
    majority = majority_f1(len(y), int(y.sum()))
    return ModelScore(procedure, label, roc_auc(y, s), auc_interval, f1, majority, len(y), selection_auc)


def _than(value: float | None, other: float | None) -> str:
    if value is None or other is None:
        return "cannot be compared with"
    return "above" if value > other else "not above"


def choose(group: Sequence[ModelScore]) -> tuple[ModelScore, str]:
    """The configuration to report of one procedure, and how it was chosen.

    The one with the best ROC-AUC on the validation patients (never the test split: a maximum over test
    scores is optimistic). Only when some run recorded no validation numbers is the test ROC-AUC used, and
    the returned phrase says so.
    """
    if all(m.selection_auc is not None for m in group):
        return max(group, key=lambda m: m.selection_auc or 0.0), "chosen on the validation patients (ROC-AUC)"
    return max(group, key=lambda m: m.auc or 0.0), "the best by test ROC-AUC (no validation numbers: optimistic)"


def verdicts(models: Sequence[ModelScore], baselines: Sequence[Baseline]) -> list[str]:
    """One sentence per procedure, generated from the numbers.

    Its configuration chosen on the validation patients (:func:`choose`), read on the test discs against
    each baseline's ROC-AUC and the majority-class F1, with the interval that the test size allows.
    """
    by_name = {b.name: b for b in baselines}
    sentences = []
    for procedure in dict.fromkeys(m.procedure for m in models):
        group = [m for m in models if m.procedure == procedure and m.auc is not None]
        if not group:
            continue
        best, how = choose(group)
        half = (best.auc_interval[1] - best.auc_interval[0]) / 2
        parts = [
            f"{procedure}: its configuration {how}, {best.label}, ranks the {best.support} test discs "
            f"with ROC-AUC {best.auc:.2f} ({best.auc_interval[0]:.2f}-{best.auc_interval[1]:.2f}, about +/-{half:.2f})"
        ]
        for name in BASELINES:
            if name in by_name:
                b = by_name[name]
                shown = "n/a" if b.auc is None else f"{b.auc:.2f}"
                parts.append(f"{_than(best.auc, b.auc)} the {name} baseline's {shown}")
        majority = _than(best.f1, best.majority_f1)
        parts.append(f"and its F1 {best.f1:.2f} is {majority} the majority-class F1 {best.majority_f1:.2f}")
        sentences.append(", ".join(parts[:1]) + ": " + ", ".join(parts[1:]) + ".")
    return sentences
