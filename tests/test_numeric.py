"""maskops.numeric: softmax and log-softmax on hand-computed numbers, temperature, empty input."""

from __future__ import annotations

import numpy as np
import pytest

from maskops.numeric import log_softmax, softmax


def test_softmax_hand_computed() -> None:
    # exp(0) : exp(log 3) = 1 : 3
    p = softmax([[0.0, np.log(3.0)], [5.0, 5.0]])
    assert p.dtype == np.float64
    np.testing.assert_allclose(p, [[0.25, 0.75], [0.5, 0.5]])


def test_temperature_softens() -> None:
    # logits / 2 = [0, log 3 / 2]: 1 : sqrt(3)
    p = softmax([[0.0, np.log(3.0)]], temperature=2.0)
    np.testing.assert_allclose(p[0], [1 / (1 + np.sqrt(3)), np.sqrt(3) / (1 + np.sqrt(3))])


def test_large_logits_are_stable_and_log_softmax_agrees() -> None:
    assert softmax([[1000.0, 0.0]])[0, 0] == pytest.approx(1.0)
    z = np.array([[1.0, 2.0, 3.0]])
    np.testing.assert_allclose(np.exp(log_softmax(z, 1.5)), softmax(z, 1.5))
    np.testing.assert_allclose(log_softmax([[0.0, 0.0]])[0], [np.log(0.5)] * 2)


def test_empty_and_invalid_inputs() -> None:
    assert softmax(np.zeros((0, 3))).shape == (0, 3)
    assert log_softmax(np.zeros((0, 2))).shape == (0, 2)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        softmax([[0.0, 1.0]], temperature=0)
    with pytest.raises(ValueError, match=r"shape \(n, num_classes\)"):
        softmax([0.0, 1.0])
