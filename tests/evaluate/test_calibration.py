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


def test_class_bias_rescues_a_rare_class() -> None:
    from maskops.evaluate.calibration import fit_class_bias
    from maskops.evaluate.metrics import macro_f1

    rng = np.random.default_rng(0)
    # class 2 is rare and its logits are systematically 1.0 too low
    y = np.array([0] * 200 + [1] * 100 + [2] * 12)
    z = rng.normal(0, 0.6, size=(len(y), 3))
    z[np.arange(len(y)), y] += 1.5
    z[:, 2] -= 1.0
    before = macro_f1(y, z.argmax(1), 3)
    bias = fit_class_bias(z, y)
    assert bias[0] == 0.0 and bias[2] > 0.3
    assert macro_f1(y, (z + bias).argmax(1), 3) > before + 0.02


def test_class_bias_stays_zero_when_argmax_is_already_best() -> None:
    from maskops.evaluate.calibration import fit_class_bias

    y = np.array([0, 1, 2, 0, 1, 2])
    z = np.eye(3)[y] * 5.0
    np.testing.assert_array_equal(fit_class_bias(z, y), np.zeros(3))
    with pytest.raises(ValueError, match="labels"):
        fit_class_bias(z, y[:3])
