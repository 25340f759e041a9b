"""The paper's metrics in both positive views against scikit-learn, the interval and baseline, and Equation 8."""

import numpy as np
import pytest
from scipy.stats import binomtest
from sklearn import metrics as sk

from lumbar.errors import InputError
from lumbar.metrics import (
    METRIC_NAMES,
    Counts,
    binary_metrics,
    improvement_rate,
    majority_f1,
    multiclass_metrics,
    ordinal_metrics,
    roc_auc,
    roc_curve,
    views_from_confusion,
    wilson_interval,
)


def test_binary_metrics_match_scikit_learn_in_both_views():
    rng = np.random.default_rng(3)
    for _ in range(20):
        y = rng.integers(0, 2, 57)  # 1 = abnormal
        prob = np.clip(y * 0.3 + rng.random(57) * 0.7, 0, 1).round(2)  # ties included, some exactly 0.5
        pred = (prob >= 0.5).astype(int)
        for positive, label in (("abnormal", 1), ("normal", 0)):
            ours = binary_metrics(y, prob, positive=positive)
            score = prob if label == 1 else 1 - prob
            expected = {
                "accuracy": sk.accuracy_score(y, pred),
                "precision": sk.precision_score(y, pred, pos_label=label, zero_division=0),
                "recall": sk.recall_score(y, pred, pos_label=label),
                "f1": sk.f1_score(y, pred, pos_label=label),
                "roc_auc": sk.roc_auc_score(y == label, score),
            }
            for key, value in expected.items():
                assert ours[key] == pytest.approx(value), (positive, key)  # the chosen view under the plain name
                assert ours[f"{positive}_{key}"] == pytest.approx(value), (positive, key)
            assert ours[f"{positive}_positives"] == int((y == label).sum())
            assert ours["positive"] == positive
            # the class-indexed matrix is the same whichever view is chosen
            assert ours["confusion"] == {
                "classes": ["normal", "abnormal"],
                "matrix": sk.confusion_matrix(y, pred).tolist(),
            }
        fpr, tpr = roc_curve(y, prob)
        sk_fpr, sk_tpr, _ = sk.roc_curve(y, prob, drop_intermediate=False)
        np.testing.assert_allclose(fpr, sk_fpr)
        np.testing.assert_allclose(tpr, sk_tpr)


def test_the_views_differ_and_come_from_one_matrix():
    # 6 normal (0), 4 abnormal (1); the model calls everything abnormal
    y, prob = np.array([0] * 6 + [1] * 4), np.full(10, 0.9)
    m = binary_metrics(y, prob)
    assert m["abnormal_recall"] == 1.0 and m["abnormal_precision"] == 0.4
    assert m["normal_recall"] == 0.0 and m["normal_f1"] == 0.0
    assert m["normal_accuracy"] == m["abnormal_accuracy"] == 0.4
    assert Counts.from_confusion(m["confusion"]["matrix"], "normal") == Counts(tp=0, fp=0, fn=6, tn=4)
    views = {k: v for k, v in m.items() if k.startswith(("normal_", "abnormal_")) and not k.endswith("roc_auc")}
    assert views_from_confusion(m["confusion"]["matrix"]) == views
    with pytest.raises(InputError, match="positive must be one of abnormal, normal"):
        binary_metrics(y, prob, positive="healthy")


def test_edge_cases():
    assert binary_metrics(np.array([0, 0]), np.array([0.1, 0.2]))["precision"] == 0.0
    assert roc_auc(np.array([1, 1]), np.array([0.3, 0.9])) is None
    assert binary_metrics(np.array([1, 0]), np.array([0.9, 0.1]))["f1"] == 1.0
    assert binary_metrics(np.array([1, 1]), np.array([0.3, 0.9]))["normal_roc_auc"] is None


def test_wilson_interval_and_majority_f1():
    for k, n in ((5, 10), (146, 182), (0, 7), (7, 7)):
        expected = binomtest(k, n).proportion_ci(method="wilson")
        assert wilson_interval(k, n) == (pytest.approx(expected.low), pytest.approx(expected.high))
    low, high = wilson_interval(55, 91)
    assert high - low < 0.21  # the paper's ROI test set: about +-10 points
    low, high = wilson_interval(4, 5)
    assert high - low > 0.5  # five images say little
    assert wilson_interval(0, 0) == (0.0, 1.0)
    assert majority_f1(91, 55) == pytest.approx(2 * (55 / 91) / (1 + 55 / 91))  # normal is the majority
    assert majority_f1(91, 36) == 0.0  # abnormal positive: the majority (normal) is never called positive
    assert majority_f1(10, 5) == pytest.approx(2 / 3)  # a tie counts as the positive class (the stricter baseline)
    # it is the F1 that always predicting the majority class scores
    y = np.array([0] * 55 + [1] * 36)
    assert binary_metrics(y, np.zeros(91), positive="normal")["f1"] == pytest.approx(majority_f1(91, 55))


def test_multiclass_metrics_match_scikit_learn():
    rng = np.random.default_rng(5)
    y = rng.integers(0, 4, 80)
    prob = rng.random((80, 4)) + np.eye(4)[y] * 0.6
    pred = prob.argmax(axis=1)
    ours = multiclass_metrics(y, prob, 4, ["normal", "degeneration", "bulge", "herniation"])
    assert ours["accuracy"] == pytest.approx(sk.accuracy_score(y, pred))
    assert ours["precision"] == pytest.approx(sk.precision_score(y, pred, average="macro", zero_division=0))
    assert ours["recall"] == pytest.approx(sk.recall_score(y, pred, average="macro", zero_division=0))
    assert ours["f1"] == pytest.approx(sk.f1_score(y, pred, average="macro", zero_division=0))
    assert ours["confusion"]["matrix"] == sk.confusion_matrix(y, pred, labels=range(4)).tolist()
    assert ours["confusion"]["classes"][3] == "herniation"


def test_ordinal_metrics_match_scikit_learn():
    """Pfirrmann agreement: balanced accuracy and linearly weighted kappa as scikit-learn computes them."""
    rng = np.random.default_rng(7)
    y = rng.integers(0, 5, 120)
    prob = rng.random((120, 5)) + np.eye(5)[np.clip(y + rng.integers(-1, 2, 120), 0, 4)] * 0.8
    pred = prob.argmax(axis=1)
    ours = ordinal_metrics(y, prob)
    assert ours["balanced_accuracy"] == pytest.approx(sk.balanced_accuracy_score(y, pred))
    assert ours["kappa_linear"] == pytest.approx(sk.cohen_kappa_score(y, pred, weights="linear"))
    assert ours["off_by_more_than_one"] == pytest.approx(np.mean(np.abs(y - pred) > 1))
    perfect = ordinal_metrics(y, np.eye(5)[y])
    assert perfect == {"balanced_accuracy": 1.0, "kappa_linear": 1.0, "off_by_more_than_one": 0.0}


def test_equation_8():
    assert improvement_rate(91.07, 78.57) == pytest.approx(15.91, abs=0.01)
    assert round(improvement_rate(91.07, 78.57)) == 16  # Table 10, ResNet50: F1 78.57 -> 91.07 printed as 16 %
    with pytest.raises(ValueError):
        improvement_rate(1.0, 0.0)
    assert METRIC_NAMES == ("accuracy", "precision", "recall", "f1")
