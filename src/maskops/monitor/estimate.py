"""Label-free performance estimate from calibrated probabilities (confidence-based performance
estimation, what NannyML calls CBPE).

If the classifier's probabilities are calibrated, a face predicted as class c with top probability
p is right with probability p. So over a window:

- expected accuracy = mean of the top probability;
- expected true positives of class c = sum of p(c) over the faces predicted c, which gives
  expected precision (divided by the faces predicted c) and expected recall (divided by the
  expected number of true c faces, the sum of p(c) over all faces);
- the interval: correctness of each face is a Bernoulli(p_i) draw, so the number correct is
  Poisson-binomial with variance sum p_i (1 - p_i); a normal approximation gives the interval.

Where it fails: the estimate is only as good as the calibration *on today's images*. A shift that
makes the classifier confidently wrong (a new mask type it calls ``with_mask`` at 0.95, a camera
that turns masks into what look like bare faces) leaves the probabilities, and so the estimate,
where they were while the accuracy falls. The interval does not cover this either: it is the
sampling spread under calibration, not calibration error. Read the estimate beside the drift tests
(a drifted embedding or image quality says the calibration may no longer hold) and beside the
measured accuracy from feedback wherever there is some.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

Z_95 = 1.959963984540054


@dataclass(frozen=True)
class PerformanceEstimate:
    """The estimate over one window.

    Attributes:
        n: faces in the window.
        expected_accuracy: mean top probability (None for an empty window).
        accuracy_low / accuracy_high: the interval around it (clipped to [0, 1]).
        expected_recall / expected_precision: per class name (None for a class with no expected
            true faces, or no face predicted as it).
        measured_accuracy: share of labelled faces whose prediction matches the label (None
            without labels).
        n_labelled: faces with a label.
        expected_accuracy_labelled: the estimate on the labelled faces only, the figure to hold
            against ``measured_accuracy`` (feedback is rarely a random sample of the window).
    """

    n: int
    expected_accuracy: float | None
    accuracy_low: float | None
    accuracy_high: float | None
    expected_recall: dict[str, float | None]
    expected_precision: dict[str, float | None]
    measured_accuracy: float | None = None
    n_labelled: int = 0
    expected_accuracy_labelled: float | None = None


def _check(probabilities: np.ndarray | list, class_names: list[str]) -> np.ndarray:
    p = np.asarray(probabilities, dtype=np.float64)
    if p.size == 0:
        return p.reshape(0, len(class_names))
    if p.ndim != 2 or p.shape[1] != len(class_names):
        raise ValueError(f"probabilities must have shape (n, {len(class_names)}), got {p.shape}")
    if not np.all(np.isfinite(p)) or np.any(p < 0) or not np.allclose(p.sum(axis=1), 1.0, atol=1e-3):
        raise ValueError("probabilities must be finite, non-negative rows summing to 1")
    return p


def estimate_performance(
    probabilities: np.ndarray | list,
    class_names: list[str],
    labels: np.ndarray | list | None = None,
    z: float = Z_95,
) -> PerformanceEstimate:
    """Expected accuracy, per-class recall and precision, and the measured accuracy beside them.

    Args:
        probabilities: (n, k) calibrated class probabilities, one row per face; the prediction is
            the row's argmax.
        class_names: the k class names, in column order.
        labels: optional (n,) true class ids, -1 where a face has no label.
        z: the normal quantile of the interval (1.96: 95 %).

    Returns:
        The estimate; an empty window gives None figures, not an error.

    Raises:
        ValueError: probabilities of the wrong shape or not rows of probabilities, or labels of the
            wrong length or out of range.
    """
    p = _check(probabilities, class_names)
    n, k = len(p), len(class_names)
    label_ids = None
    if labels is not None:
        label_ids = np.asarray(labels, dtype=np.int64).ravel()
        if len(label_ids) != n:
            raise ValueError(f"labels has {len(label_ids)} entries for {n} faces")
        if np.any((label_ids < -1) | (label_ids >= k)):
            raise ValueError(f"labels must be class ids 0..{k - 1}, or -1 for no label")
    if n == 0:
        none: dict[str, float | None] = dict.fromkeys(class_names)
        return PerformanceEstimate(0, None, None, None, none, dict(none))
    predicted = p.argmax(axis=1)
    top = p[np.arange(n), predicted]
    accuracy = float(top.mean())
    half = z * math.sqrt(float(np.sum(top * (1 - top)))) / n
    expected_tp = np.bincount(predicted, weights=top, minlength=k)
    n_predicted = np.bincount(predicted, minlength=k)
    expected_true = p.sum(axis=0)
    recall = {c: _ratio(expected_tp[i], expected_true[i]) for i, c in enumerate(class_names)}
    precision = {c: _ratio(expected_tp[i], n_predicted[i]) for i, c in enumerate(class_names)}
    measured = labelled_estimate = None
    n_labelled = 0
    if label_ids is not None:
        known = label_ids >= 0
        n_labelled = int(known.sum())
        if n_labelled:
            measured = float(np.mean(predicted[known] == label_ids[known]))
            labelled_estimate = float(top[known].mean())
    return PerformanceEstimate(
        n=n,
        expected_accuracy=accuracy,
        accuracy_low=max(0.0, accuracy - half),
        accuracy_high=min(1.0, accuracy + half),
        expected_recall=recall,
        expected_precision=precision,
        measured_accuracy=measured,
        n_labelled=n_labelled,
        expected_accuracy_labelled=labelled_estimate,
    )


def _ratio(num: float, den: float) -> float | None:
    return float(num / den) if den > 0 else None
