"""The report's sentences about models and baselines are generated from the numbers, and agree with them."""

import re

import numpy as np
import pytest

from lumbar.baselines import Baseline, ModelScore, bootstrap, fit, model_score, verdicts


def _rules(level_auc: float, brightness_auc: float) -> list[Baseline]:
    return [
        Baseline("level", 1, 11.5, level_auc, 0.70, 100, (level_auc - 0.1, level_auc + 0.1), (0.6, 0.8)),
        Baseline("brightness", -1, -120.0, brightness_auc, 0.72, 100, (0.6, 0.9), (0.6, 0.8)),
    ]


def _model(
    procedure: str, label: str, auc: float, f1: float, majority: float = 0.74, selection: float | None = 0.8
) -> ModelScore:
    return ModelScore(procedure, label, auc, (auc - 0.08, auc + 0.08), f1, majority, 100, selection)


@pytest.mark.parametrize(("auc", "f1"), [(0.82, 0.80), (0.70, 0.80), (0.60, 0.70)])
def test_each_sentence_says_what_its_numbers_say(auc, f1):
    models = [
        _model("procedure1", "vgg16-frozen-roi (imagenet)", auc, f1, selection=0.9),
        _model("procedure1", "worse", 0.5, 0.9, selection=0.7),
    ]
    (sentence,) = verdicts(models, _rules(0.65, 0.76))
    assert "vgg16-frozen-roi (imagenet)" in sentence  # the best on validation, not the best by F1
    assert "chosen on the validation patients" in sentence
    said = dict(
        re.findall(r"(above|not above) the (level|brightness) baseline", sentence)[::-1][i][::-1] for i in range(2)
    )
    assert said["level"] == ("above" if auc > 0.65 else "not above")
    assert said["brightness"] == ("above" if auc > 0.76 else "not above")
    assert re.search(rf"is {'above' if f1 > 0.74 else 'not above'} the majority-class F1 0.74", sentence)
    assert f"ROC-AUC {auc:.2f} ({auc - 0.08:.2f}-{auc + 0.08:.2f}, about +/-0.08)" in sentence


def test_the_configuration_is_chosen_on_validation_never_on_test():
    """The run best on the test discs is not the one reported when another was better on validation."""
    models = [
        _model("procedure1", "best-on-test", 0.95, 0.9, selection=0.70),
        _model("procedure1", "best-on-validation", 0.80, 0.8, selection=0.85),
    ]
    (sentence,) = verdicts(models, _rules(0.65, 0.76))
    assert "best-on-validation" in sentence and "ROC-AUC 0.80" in sentence and "best-on-test" not in sentence
    # a run without validation numbers: the test maximum, and the sentence says it is optimistic
    models.append(_model("procedure1", "unvalidated", 0.6, 0.7, selection=None))
    (sentence,) = verdicts(models, _rules(0.65, 0.76))
    assert "best-on-test" in sentence and "optimistic" in sentence


def test_one_sentence_per_procedure_in_order():
    models = [_model("procedure2", "a", 0.7, 0.8), _model("procedure1", "b", 0.6, 0.7)]
    assert [s.split(":")[0] for s in verdicts(models, _rules(0.65, 0.76))] == ["procedure2", "procedure1"]


def test_model_score_and_bootstrap_come_from_the_predictions():
    true = [0, 0, 1, 1, 0, 1, 1, 0]
    score = [0.1, 0.2, 0.8, 0.9, 0.3, 0.7, 0.6, 0.4]  # perfectly ranked
    scored = model_score("procedure1", "x", true, score, ["a", "a", "b", "b", "c", "c", "d", "d"], f1=1.0)
    assert scored.auc == 1.0 and scored.auc_interval == (1.0, 1.0) and scored.support == 8
    assert scored.majority_f1 == pytest.approx(2 * 0.5 / 1.5)  # ties count as the positive majority
    (low, high), _ = bootstrap(np.asarray(true), 1 - np.asarray(score), np.zeros(8), list("aabbccdd"))
    assert low <= high <= 0.5  # the reversed ranking: every resample below chance
    assert fit(np.asarray([1.0, 2.0, 3.0]), np.asarray([0, 1, 1])) == (1, pytest.approx(2.0 - 1e-9))
