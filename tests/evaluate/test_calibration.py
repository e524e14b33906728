from __future__ import annotations

import numpy as np
import pytest

from maskops.evaluate.calibration import (
    expected_calibration_error,
    fit_temperature,
    nll,
    reliability_bins,
    softmax,
)


def test_softmax_temperature() -> None:
    p = softmax([[0.0, np.log(3.0)]])
    assert p == pytest.approx(np.array([[0.25, 0.75]]))
    # T = 2 halves the logit gap: sqrt(3) odds
    q = softmax([[0.0, np.log(3.0)]], temperature=2.0)
    assert q[0, 1] / q[0, 0] == pytest.approx(np.sqrt(3.0))
    assert softmax(np.array([[1000.0, 0.0]]))[0, 0] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="temperature"):
        softmax([[0.0, 1.0]], temperature=0)


def test_ece_hand_computed() -> None:
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4]])
    labels = np.array([0, 1, 0, 0])
    # bin of 0.9: accuracy 0.5 (gap 0.4); bin of 0.6: accuracy 1.0 (gap 0.4)
    assert expected_calibration_error(probs, labels, n_bins=10) == pytest.approx(0.4)
    bins = reliability_bins(probs, labels, n_bins=10)
    assert bins.count.sum() == 4
    assert np.nansum(bins.accuracy * bins.count) == pytest.approx(3)
    assert expected_calibration_error(np.zeros((0, 2)), np.zeros(0, int)) == 0.0


def _calibrated_logits(n: int = 20000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=1.5, size=(n, 3))
    p = softmax(logits)
    labels = (rng.random(n)[:, None] > np.cumsum(p, axis=1)).sum(axis=1)
    return logits, labels


def test_fit_temperature_recovers_overconfidence_factor() -> None:
    logits, labels = _calibrated_logits()
    overconfident = logits * 3.0
    t = fit_temperature(overconfident, labels)
    assert t == pytest.approx(3.0, rel=0.1)
    before = expected_calibration_error(softmax(overconfident), labels)
    after = expected_calibration_error(softmax(overconfident, t), labels)
    assert after < before / 3
    assert nll(overconfident, labels, t) < nll(overconfident, labels)
    # deterministic
    assert fit_temperature(overconfident, labels) == t


def test_fit_temperature_edge_cases() -> None:
    assert fit_temperature(np.zeros((0, 3)), np.zeros(0, int)) == 1.0
    with pytest.raises(ValueError, match="labels"):
        fit_temperature(np.zeros((2, 3)), [0, 5])
    with pytest.raises(ValueError, match="rows"):
        fit_temperature(np.zeros((2, 3)), [0])
