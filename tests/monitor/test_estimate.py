"""The label-free estimate on hand-made probabilities with known answers, and its known failure."""

from __future__ import annotations

import math

import numpy as np
import pytest

from maskops.monitor.estimate import estimate_performance

NAMES2 = ["with_mask", "without_mask"]
P4 = [[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.4, 0.6]]


def test_hand_computed_estimate() -> None:
    est = estimate_performance(P4, NAMES2)
    assert est.n == 4
    assert est.expected_accuracy == pytest.approx(0.75)  # (0.9 + 0.8 + 0.7 + 0.6) / 4
    # class 0: predicted for rows 0, 1 -> expected TP 1.7; expected true count 0.9+0.8+0.3+0.4 = 2.4
    assert est.expected_precision["with_mask"] == pytest.approx(0.85)
    assert est.expected_recall["with_mask"] == pytest.approx(1.7 / 2.4)
    # class 1: expected TP 0.7 + 0.6 = 1.3 over 2 predicted; expected true count 1.6
    assert est.expected_precision["without_mask"] == pytest.approx(0.65)
    assert est.expected_recall["without_mask"] == pytest.approx(0.8125)
    # variance of the number correct: .09 + .16 + .21 + .24 = 0.7
    half = 1.959963984540054 * math.sqrt(0.7) / 4
    assert est.accuracy_low == pytest.approx(0.75 - half)
    assert est.accuracy_high == pytest.approx(min(1.0, 0.75 + half))
    assert est.measured_accuracy is None
    assert est.n_labelled == 0


def test_measured_accuracy_beside_the_estimate() -> None:
    est = estimate_performance(P4, NAMES2, labels=[0, 1, 1, -1])
    assert est.n_labelled == 3
    assert est.measured_accuracy == pytest.approx(2 / 3)
    assert est.expected_accuracy_labelled == pytest.approx((0.9 + 0.8 + 0.7) / 3)


def test_class_never_predicted_has_no_precision() -> None:
    est = estimate_performance([[0.9, 0.1, 0.0], [0.6, 0.3, 0.1]], ["a", "b", "c"])
    assert est.expected_precision == {"a": pytest.approx(0.75), "b": None, "c": None}
    assert est.expected_recall["b"] == 0.0


def test_empty_window() -> None:
    est = estimate_performance(np.zeros((0, 2)), NAMES2, labels=[])
    assert est.n == 0
    assert est.expected_accuracy is None
    assert est.expected_recall == {"with_mask": None, "without_mask": None}


@pytest.mark.parametrize(
    ("probs", "labels", "match"),
    [
        ([[0.5, 0.5, 0.0]], None, "shape"),
        ([[0.9, 0.3]], None, "summing to 1"),
        ([[1.2, -0.2]], None, "non-negative"),
        ([[0.5, 0.5]], [0, 1], "2 entries for 1 faces"),
        ([[0.5, 0.5]], [2], "class ids"),
    ],
)
def test_bad_inputs(probs, labels, match) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=match):
        estimate_performance(probs, NAMES2, labels=labels)


def _calibrated(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and labels drawn from them: calibrated by construction."""
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet([0.6, 0.6, 0.6], size=n)
    labels = np.array([rng.choice(3, p=row) for row in probs])
    return probs, labels


def test_estimate_holds_when_calibrated() -> None:
    probs, labels = _calibrated(4000, seed=0)
    est = estimate_performance(probs, ["a", "b", "c"], labels=labels)
    assert est.accuracy_low <= est.measured_accuracy <= est.accuracy_high
    assert abs(est.expected_accuracy - est.measured_accuracy) < 0.02


def test_estimate_fails_when_confidently_wrong() -> None:
    """The documented failure: a shift flips the true classes while the classifier keeps its
    confidence. The estimate does not move; the measured accuracy collapses."""
    probs, labels = _calibrated(4000, seed=0)
    before = estimate_performance(probs, ["a", "b", "c"], labels=labels)
    shifted = (labels + 1) % 3  # every face now truly belongs to the next class
    after = estimate_performance(probs, ["a", "b", "c"], labels=shifted)
    assert after.expected_accuracy == before.expected_accuracy  # same probabilities, same estimate
    assert after.measured_accuracy < 0.3
    assert not after.accuracy_low <= after.measured_accuracy <= after.accuracy_high
