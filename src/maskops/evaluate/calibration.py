"""Calibration: expected calibration error, reliability bins, temperature and class-bias fits.

All functions are pure. ``fit_temperature`` minimises the negative log-likelihood over ``log T`` with a
golden-section search: the NLL is convex in ``1/T`` (log-sum-exp of a linear function), hence unimodal in
``log T``, so the 1-D search is robust and deterministic without scipy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from maskops.numeric import log_softmax, softmax

__all__ = [
    "ReliabilityBins",
    "expected_calibration_error",
    "fit_class_bias",
    "fit_temperature",
    "log_softmax",
    "nll",
    "reliability_bins",
    "softmax",
]


def _logits(logits: Any) -> np.ndarray:
    z = np.asarray(logits, np.float64)
    if z.ndim != 2:
        raise ValueError(f"logits must have shape (n, num_classes), got {z.shape}")
    return z


def nll(logits: Any, labels: Any, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood of ``labels`` under ``softmax(logits / T)``; 0.0 for empty input."""
    lp = log_softmax(logits, temperature)
    y = np.asarray(labels, np.int64).reshape(-1)
    if y.shape[0] != lp.shape[0]:
        raise ValueError(f"labels has {y.shape[0]} entries but logits has {lp.shape[0]} rows")
    if y.size == 0:
        return 0.0
    if y.min() < 0 or y.max() >= lp.shape[1]:
        raise ValueError(f"labels must be in [0, {lp.shape[1]}), got min {y.min()}, max {y.max()}")
    return float(-lp[np.arange(y.size), y].mean())


@dataclass(frozen=True)
class ReliabilityBins:
    """Top-label reliability diagram data over equal-width confidence bins.

    Attributes:
        edges: (n_bins + 1,) bin edges on [0, 1]; bin b holds confidences in ``(edges[b], edges[b+1]]``
            (the first bin also holds 0).
        count: (n_bins,) samples per bin.
        accuracy: (n_bins,) accuracy per bin (``nan`` for an empty bin).
        confidence: (n_bins,) mean top-label confidence per bin (``nan`` for an empty bin).
    """

    edges: np.ndarray
    count: np.ndarray
    accuracy: np.ndarray
    confidence: np.ndarray

    @property
    def ece(self) -> float:
        n = int(self.count.sum())
        if n == 0:
            return 0.0
        used = self.count > 0
        gaps = np.abs(self.accuracy[used] - self.confidence[used])
        return float((self.count[used] * gaps).sum() / n)

    def to_dict(self) -> dict[str, Any]:
        return {
            "edges": self.edges.tolist(),
            "count": self.count.tolist(),
            "accuracy": [None if math.isnan(v) else float(v) for v in self.accuracy],
            "confidence": [None if math.isnan(v) else float(v) for v in self.confidence],
        }


def reliability_bins(probs: Any, labels: Any, n_bins: int = 15) -> ReliabilityBins:
    """Bin samples by top-label confidence and measure accuracy and mean confidence per bin.

    Args:
        probs: (n, C) probabilities.
        labels: (n,) true class ids.
        n_bins: number of equal-width bins on [0, 1].

    Returns:
        ``ReliabilityBins``; all counts zero for an empty input.
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    p = np.asarray(probs, np.float64)
    y = np.asarray(labels, np.int64).reshape(-1)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    if p.size == 0 and y.size == 0:
        nan = np.full(n_bins, np.nan)
        return ReliabilityBins(edges, np.zeros(n_bins, np.int64), nan, nan.copy())
    if p.ndim != 2 or p.shape[0] != y.size:
        raise ValueError(f"probs must have shape ({y.size}, num_classes), got {p.shape}")
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    # bin b holds (b/n, (b+1)/n]; confidence 0 goes to bin 0
    idx = np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    count = np.bincount(idx, minlength=n_bins)
    sum_acc = np.bincount(idx, weights=correct, minlength=n_bins)
    sum_conf = np.bincount(idx, weights=conf, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc = np.where(count > 0, sum_acc / np.maximum(count, 1), np.nan)
        mean_conf = np.where(count > 0, sum_conf / np.maximum(count, 1), np.nan)
    return ReliabilityBins(edges, count.astype(np.int64), acc, mean_conf)


def expected_calibration_error(probs: Any, labels: Any, n_bins: int = 15) -> float:
    """Top-label expected calibration error.

    ``ECE = sum_b |B_b| / n * |acc(B_b) - conf(B_b)|`` over equal-width confidence bins
    (Guo et al. 2017). Returns 0.0 for an empty input.
    """
    return reliability_bins(probs, labels, n_bins).ece


def fit_temperature(
    logits: Any,
    labels: Any,
    *,
    bounds: tuple[float, float] = (0.05, 20.0),
    tol: float = 1e-6,
    max_iter: int = 200,
) -> float:
    """Temperature ``T`` minimising the NLL of ``softmax(logits / T)`` on held-out data.

    Golden-section search over ``log T`` in ``bounds``: deterministic, no randomness, no scipy.

    Args:
        logits: (n, C) raw logits (validation set).
        labels: (n,) true class ids.
        bounds: search interval for T.
        tol: stop when the interval in ``log T`` is shorter than this.
        max_iter: iteration cap.

    Returns:
        The fitted temperature; 1.0 for an empty input.

    Raises:
        ValueError: bad shapes, labels out of range, or invalid bounds.
    """
    z = _logits(logits)
    y = np.asarray(labels, np.int64).reshape(-1)
    if y.size != z.shape[0]:
        raise ValueError(f"labels has {y.size} entries but logits has {z.shape[0]} rows")
    if not 0 < bounds[0] < bounds[1]:
        raise ValueError(f"bounds must satisfy 0 < low < high, got {bounds}")
    if y.size == 0:
        return 1.0
    nll(z, y)  # validates the labels once

    def f(log_t: float) -> float:
        return nll(z, y, math.exp(log_t))

    inv_phi = (math.sqrt(5.0) - 1.0) / 2.0
    a, b = math.log(bounds[0]), math.log(bounds[1])
    c = b - inv_phi * (b - a)
    d = a + inv_phi * (b - a)
    fc, fd = f(c), f(d)
    for _ in range(max_iter):
        if b - a < tol:
            break
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - inv_phi * (b - a)
            fc = f(c)
        else:
            a, c, fc = c, d, fd
            d = a + inv_phi * (b - a)
            fd = f(d)
    best = min([(f(a), a), (fc, c), (fd, d), (f(b), b)])
    return float(math.exp(best[1]))


def fit_class_bias(
    logits: Any,
    labels: Any,
    temperature: float = 1.0,
    *,
    span: float = 3.0,
    step: float = 0.1,
    rounds: int = 3,
) -> np.ndarray:
    """Per-class additive bias on ``logits / temperature`` that maximises macro-F1.

    Argmax decisions on imbalanced data favour the frequent classes; a bias on the log-probabilities
    moves the decision boundaries without touching the ranking within a class. Coordinate ascent
    over classes 1..K-1 (class 0 stays at 0) on a grid ``[-span, span]``; among equal macro-F1 the
    smallest bias wins, so a class is only moved when that helps on the data given.

    Fit it on validation data only, and report its effect on test.

    Args:
        logits: (n, K) uncalibrated logits.
        labels: (n,) true class ids.
        temperature: the fitted temperature (the bias applies after it).
        span, step: the grid searched per class.
        rounds: passes of coordinate ascent.

    Returns:
        (K,) float64 bias; ``argmax(logits / T + bias)`` is the decision.
    """
    from maskops.evaluate.metrics import macro_f1

    z = _logits(logits) / float(temperature)
    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    if z.shape[0] != y.shape[0]:
        raise ValueError(f"got {z.shape[0]} logit rows but {y.shape[0]} labels")
    k = z.shape[1]
    bias = np.zeros(k, np.float64)
    grid = np.round(np.arange(-span, span + step / 2, step), 6)
    grid = grid[np.argsort(np.abs(grid), kind="stable")]  # smallest |b| first: ties keep it small
    best = macro_f1(y, (z + bias).argmax(1), k)
    for _ in range(rounds):
        changed = False
        for c in range(1, k):
            for value in grid:
                trial = bias.copy()
                trial[c] = value
                score = macro_f1(y, (z + trial).argmax(1), k)
                if score > best + 1e-12:
                    best, bias, changed = score, trial, True
        if not changed:
            break
    return bias
