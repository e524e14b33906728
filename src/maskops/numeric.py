"""Small numeric helpers every layer may import (numpy only): softmax and log-softmax with temperature."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["log_softmax", "softmax"]


def _scaled(logits: Any, temperature: float) -> np.ndarray:
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    z = np.asarray(logits, np.float64)
    if z.ndim != 2:
        raise ValueError(f"logits must have shape (n, num_classes), got {z.shape}")
    return z / float(temperature)


def softmax(logits: Any, temperature: float = 1.0) -> np.ndarray:
    """Row-wise ``softmax(logits / temperature)``, computed in float64.

    Args:
        logits: (n, C) raw scores.
        temperature: > 0; values above 1 soften the distribution, below 1 sharpen it.

    Returns:
        (n, C) float64 probabilities; rows sum to 1; (0, C) for empty input.

    Raises:
        ValueError: ``temperature`` <= 0 or ``logits`` not 2-D.
    """
    z = _scaled(logits, temperature)
    if z.shape[0] == 0:
        return z
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def log_softmax(logits: Any, temperature: float = 1.0) -> np.ndarray:
    """Row-wise ``log softmax(logits / temperature)``, numerically stable; (n, C) float64.

    Raises:
        ValueError: ``temperature`` <= 0 or ``logits`` not 2-D.
    """
    z = _scaled(logits, temperature)
    if z.shape[0] == 0:
        return z
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))
