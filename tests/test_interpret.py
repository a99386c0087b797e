"""Interpretation and calibration on probabilities built by hand, checked against hand computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cnnkit.data.datasets import DecodedImages
from cnnkit.evaluate import (
    apply_temperature,
    confidently_wrong,
    confused_pairs,
    expected_calibration_error,
    find_landmarks,
    fit_temperature,
    hesitant,
    plot_curves,
    roc_auc_per_class,
    score,
    top_k_accuracy,
)
from cnnkit.evaluate.interpret import default_top_k
from cnnkit.models import create_model
from cnnkit.predictor import Predictor

CLASSES = ["cat", "dog", "fox"]


def one_hot_ish(winner: int, confidence: float, runner_up: int | None = None) -> list[float]:
    """Probabilities with ``confidence`` on ``winner`` and the rest on ``runner_up`` (or spread evenly)."""
    row = np.full(len(CLASSES), (1 - confidence) / (len(CLASSES) - 1))
    if runner_up is not None:
        row[:] = 0.0
        row[runner_up] = 1 - confidence
    row[winner] = confidence
    return row.tolist()


def evaluation_of(labels: list[int], probabilities: list[list[float]]):
    decoded = DecodedImages(torch.empty(0), torch.tensor(labels), [f"img_{i:02d}.png" for i in range(len(labels))], [])
    return score(np.array(probabilities), decoded, CLASSES, "test", "none")


def test_swapped_labels_top_the_confidently_wrong_list() -> None:
    # Twelve images the model gets right, two honest mistakes with low confidence, and three images whose
    # label was swapped: the model sees a cat (say) with confidence 0.9x, but the label says dog.
    labels, probabilities = [], []
    for i in range(12):
        labels.append(i % 3)
        probabilities.append(one_hot_ish(i % 3, 0.8))
    honest_mistakes = [(0, 1, 0.55), (2, 0, 0.5)]  # (label, class the model sees, confidence): images 12, 13
    swapped_labels = [(1, 0, 0.93), (2, 1, 0.99), (0, 2, 0.96)]  # images 14, 15, 16
    for label, seen, confidence in honest_mistakes + swapped_labels:
        labels.append(label)
        probabilities.append(one_hot_ish(seen, confidence))
    evaluation = evaluation_of(labels, probabilities)

    worst = confidently_wrong(evaluation.probabilities, evaluation.labels, evaluation.sources, CLASSES)

    assert [case.index for case in worst] == [15, 16, 14, 12, 13]
    top = worst[0]
    assert (top.source, top.true_label, top.predicted_label) == ("img_15.png", "fox", "dog")
    assert top.probability == pytest.approx(0.99)
    assert top.true_probability == pytest.approx(0.005)
    assert not top.correct


def test_hesitant_lists_the_smallest_margins_first() -> None:
    probabilities = [
        one_hot_ish(0, 0.9, runner_up=1),  # margin 0.8
        one_hot_ish(1, 0.52, runner_up=0),  # margin 0.04, right
        one_hot_ish(2, 0.6, runner_up=1),  # margin 0.2, wrong (label 1)
        [0.34, 0.33, 0.33],  # margin 0.01
    ]
    evaluation = evaluation_of([0, 1, 1, 2], probabilities)

    # limit 4, but the 0.8 margin is no hesitation
    cases = hesitant(evaluation.probabilities, evaluation.labels, evaluation.sources, CLASSES, limit=4, max_margin=0.5)

    assert [case.index for case in cases] == [3, 1, 2]
    assert [case.margin for case in cases] == pytest.approx([0.01, 0.04, 0.2])
    assert cases[1].runner_up_label == "cat" and cases[1].correct
    assert cases[2].predicted_label == "fox" and not cases[2].correct


def test_confused_pairs_and_per_class_scores_match_a_hand_count() -> None:
    # true cat x5 -> cat, cat, dog, dog, fox; dog x4 -> dog, dog, dog, cat; fox x3 -> fox, dog, dog
    labels = [0] * 5 + [1] * 4 + [2] * 3
    predicted = [0, 0, 1, 1, 2, 1, 1, 1, 0, 2, 1, 1]
    evaluation = evaluation_of(labels, [one_hot_ish(p, 0.7) for p in predicted])

    pairs = confused_pairs(evaluation.confusion, CLASSES)

    assert [(p.true_label, p.predicted_label, p.count) for p in pairs] == [
        ("cat", "dog", 2),
        ("fox", "dog", 2),
        ("cat", "fox", 1),
        ("dog", "cat", 1),
    ]
    assert [p.share for p in pairs] == pytest.approx([2 / 5, 2 / 3, 1 / 5, 1 / 4])
    # precision = right / called that class; recall = right / really that class
    expected = {"cat": (2 / 3, 2 / 5), "dog": (3 / 7, 3 / 4), "fox": (1 / 2, 1 / 3)}
    for name, (precision, recall) in expected.items():
        row = evaluation.report[name]
        assert row["precision"] == pytest.approx(precision)
        assert row["recall"] == pytest.approx(recall)
        assert row["f1-score"] == pytest.approx(2 * precision * recall / (precision + recall))
    assert evaluation.accuracy == pytest.approx(6 / 12)


def test_top_k_accuracy_and_roc_auc_by_hand() -> None:
    labels = np.array([0, 0, 1, 2, 2])
    probabilities = np.array(
        [
            [0.9, 0.05, 0.05],  # cat first
            [0.4, 0.5, 0.1],  # cat second
            [0.5, 0.2, 0.3],  # dog third
            [0.3, 0.1, 0.6],  # fox first
            [0.2, 0.7, 0.1],  # fox third
        ]
    )
    assert top_k_accuracy(probabilities, labels, 1) == pytest.approx(2 / 5)
    assert top_k_accuracy(probabilities, labels, 2) == pytest.approx(3 / 5)
    assert top_k_accuracy(probabilities, labels, 3) == pytest.approx(1.0)
    auc = roc_auc_per_class(probabilities, labels, CLASSES)
    # cat: positives score 0.9, 0.4; negatives 0.5, 0.3, 0.2 -> 5 of 6 pairs ranked right
    assert auc["cat"] == pytest.approx(5 / 6)
    # dog: positive 0.2; negatives 0.05, 0.5, 0.1, 0.7 -> 2 of 4
    assert auc["dog"] == pytest.approx(2 / 4)
    assert roc_auc_per_class(probabilities, np.array([0, 0, 0, 1, 1]), CLASSES)["fox"] is None
    assert [default_top_k(n) for n in (2, 3, 5, 10, 1000)] == [1, 2, 3, 5, 5]


def test_expected_calibration_error_by_hand() -> None:
    probabilities = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4]])
    labels = np.array([0, 1, 0, 0])
    # bin (0.867, 0.933]: confidence 0.9, accuracy 0.5; bin (0.533, 0.6]: confidence 0.6, accuracy 1.0
    assert expected_calibration_error(probabilities, labels) == pytest.approx((2 * 0.4 + 2 * 0.4) / 4)
    assert expected_calibration_error(np.array([[1.0, 0.0]]), np.array([0])) == pytest.approx(0.0)


def test_temperature_scaling_lowers_the_ece_of_an_overconfident_model() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 1.5, (4000, 4))
    honest = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    labels = np.array([rng.choice(4, p=p) for p in honest])  # the honest probabilities are calibrated
    sharp = np.exp(3 * logits)
    overconfident = sharp / sharp.sum(1, keepdims=True)  # same ranking, logits three times too large
    val, test = slice(0, 2000), slice(2000, None)

    temperature = fit_temperature(overconfident[val], labels[val])
    calibrated = apply_temperature(overconfident[test], temperature)

    assert temperature == pytest.approx(3.0, rel=0.1)
    before = expected_calibration_error(overconfident[test], labels[test])
    after = expected_calibration_error(calibrated, labels[test])
    assert before > 0.1
    assert after < before / 3
    assert (calibrated.argmax(1) == overconfident[test].argmax(1)).all()  # accuracy is untouched


def test_predictor_divides_logits_by_its_temperature() -> None:
    model = create_model("plain_cnn", 3, image_size=32)
    images = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    plain = Predictor.create(model, CLASSES, precision="fp32").probabilities(images).numpy()
    cooled = Predictor.create(model, CLASSES, precision="fp32", temperature=2.5).probabilities(images).numpy()
    assert cooled == pytest.approx(apply_temperature(plain, 2.5), abs=1e-5)


def history(val_losses: list[float], train_losses: list[float]) -> list[dict]:
    return [
        {"epoch": i + 1, "stage": "train", "loss": t, "accuracy": 0.5, "val_loss": v, "val_accuracy": 0.5}
        for i, (v, t) in enumerate(zip(val_losses, train_losses, strict=True))
    ]


def test_curve_landmarks_find_the_best_epoch_and_the_start_of_overfitting(tmp_path) -> None:
    overfit = history([1.0, 0.7, 0.5, 0.45, 0.5, 0.6, 0.7], [1.1, 0.7, 0.5, 0.4, 0.3, 0.2, 0.1])
    landmarks = find_landmarks(overfit)
    assert (landmarks.best_epoch, landmarks.overfitting_epoch) == (4, 5)
    assert landmarks.gap_at_best == pytest.approx(0.05) and landmarks.final_gap == pytest.approx(0.6)
    assert "epoch 5" in landmarks.describe()

    still_learning = history([1.0, 0.8, 0.6, 0.5], [1.1, 0.9, 0.7, 0.6])
    assert find_landmarks(still_learning).overfitting_epoch is None
    one_bad_epoch = history([1.0, 0.8, 0.6, 0.7], [1.1, 0.9, 0.7, 0.5])
    assert find_landmarks(one_bad_epoch).overfitting_epoch is None  # one epoch is noise, not a trend
    assert find_landmarks([]).best_epoch is None

    plot_curves(overfit, tmp_path / "curves.png")  # training's call keeps working, now annotated
    assert (tmp_path / "curves.png").stat().st_size > 10_000
