"""Pure classification metrics on numpy arrays.

Conventions:
    * Labels are integer class ids in ``[0, num_classes)``; probabilities are ``(n, C)`` rows.
    * A ratio whose denominator is zero (precision of a class never predicted, recall of a class
      with no samples, F1 when both are zero) is reported as ``0.0``; nothing here warns or raises
      for that case.
    * ROC-AUC of a class with no positives or no negatives is undefined and reported as ``nan``;
      the macro average ignores those classes (``nan`` when none is defined).
    * Empty inputs are accepted: counts are zero, rates are ``0.0`` (AUC ``nan``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "accuracy",
    "average_precision_score",
    "balanced_accuracy",
    "classification_metrics",
    "confusion_matrix",
    "macro_f1",
    "precision_recall_f1",
    "roc_auc_binary",
    "roc_auc_ovr",
    "roc_curve",
]


def _labels(y: Any, name: str, num_classes: int | None = None) -> np.ndarray:
    arr = np.asarray(y)
    if arr.size == 0:
        return np.zeros(0, np.int64)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1D array of class ids, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer) and not np.all(np.equal(np.mod(arr, 1), 0)):
        raise ValueError(f"{name} must hold integer class ids, got dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if num_classes is not None and (arr.min() < 0 or arr.max() >= num_classes):
        raise ValueError(
            f"{name} holds class ids outside [0, {num_classes}): min {arr.min()}, max {arr.max()}"
        )
    return arr


def _probs(y_prob: Any, n: int) -> np.ndarray:
    p = np.asarray(y_prob, dtype=np.float64)
    if p.size == 0 and n == 0:
        return p.reshape(0, p.shape[-1] if p.ndim == 2 else 0)
    if p.ndim != 2 or p.shape[0] != n:
        raise ValueError(f"y_prob must have shape ({n}, num_classes), got {p.shape}")
    return p


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num = np.asarray(num, np.float64)
    den = np.asarray(den, np.float64)
    out = np.zeros(np.broadcast(num, den).shape, np.float64)
    np.divide(num, den, out=out, where=den != 0)
    return out


def confusion_matrix(y_true: Any, y_pred: Any, num_classes: int) -> np.ndarray:
    """Count matrix with true classes as rows and predicted classes as columns.

    Args:
        y_true: (n,) true class ids.
        y_pred: (n,) predicted class ids.
        num_classes: C, the number of classes.

    Returns:
        (C, C) int64 array; all zeros for empty inputs.

    Raises:
        ValueError: shapes differ or a class id is outside ``[0, C)``.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    t = _labels(y_true, "y_true", num_classes)
    p = _labels(y_pred, "y_pred", num_classes)
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred must have the same length, got {t.shape[0]} and {p.shape[0]}")
    cm = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(cm, (t, p), 1)
    return cm


def precision_recall_f1(cm: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-class precision, recall, F1 and support from a confusion matrix.

    Args:
        cm: (C, C) confusion matrix, rows true, columns predicted.

    Returns:
        ``(precision, recall, f1, support)``, each (C,). Undefined ratios (zero denominator) are 0.0.
    """
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"cm must be a square 2D array, got shape {cm.shape}")
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    precision = _safe_div(tp, predicted)
    recall = _safe_div(tp, support)
    f1 = _safe_div(2 * precision * recall, precision + recall)
    return precision, recall, f1, support.astype(np.int64)


def macro_f1(y_true: Any, y_pred: Any, num_classes: int) -> float:
    """Unweighted mean of the per-class F1 over all ``num_classes`` classes (0.0 for empty input).

    A class absent from both ``y_true`` and ``y_pred`` contributes F1 = 0 (the classes are fixed by
    the task, so a class never seen is not silently dropped).
    """
    cm = confusion_matrix(y_true, y_pred, num_classes)
    if cm.sum() == 0:
        return 0.0
    return float(precision_recall_f1(cm)[2].mean())


def accuracy(y_true: Any, y_pred: Any) -> float:
    """Fraction of exact matches; 0.0 for empty input."""
    t = _labels(y_true, "y_true")
    p = _labels(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred must have the same length, got {t.shape[0]} and {p.shape[0]}")
    return float((t == p).mean()) if t.size else 0.0


def balanced_accuracy(y_true: Any, y_pred: Any, num_classes: int) -> float:
    """Mean recall over the classes that occur in ``y_true`` (scikit-learn's definition).

    Returns 0.0 for empty input.
    """
    cm = confusion_matrix(y_true, y_pred, num_classes)
    support = cm.sum(axis=1)
    present = support > 0
    if not present.any():
        return 0.0
    recall = np.diag(cm)[present] / support[present]
    return float(recall.mean())


def roc_auc_binary(y_true_binary: Any, scores: Any) -> float:
    """Area under the ROC curve for a binary problem (Mann-Whitney U with tie correction).

    Args:
        y_true_binary: (n,) booleans / 0-1, True = positive.
        scores: (n,) scores, higher = more positive.

    Returns:
        The AUC, or ``nan`` when there are no positives or no negatives.
    """
    y = np.asarray(y_true_binary).astype(bool).reshape(-1)
    s = np.asarray(scores, np.float64).reshape(-1)
    if y.shape != s.shape:
        raise ValueError(f"labels and scores must have the same length, got {y.shape[0]} and {s.shape[0]}")
    n_pos = int(y.sum())
    n_neg = int(y.size - n_pos)
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = _average_ranks(s)
    u = ranks[y].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u / (n_pos * n_neg))


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties get the mean of their ranks."""
    order = np.argsort(values, kind="mergesort")
    sorted_vals = values[order]
    ranks = np.empty(values.size, np.float64)
    # boundaries of runs of equal values
    starts = np.concatenate([[0], np.flatnonzero(np.diff(sorted_vals)) + 1])
    ends = np.concatenate([starts[1:], [values.size]])
    for s, e in zip(starts, ends, strict=True):
        ranks[order[s:e]] = (s + 1 + e) / 2.0
    return ranks


def roc_auc_ovr(y_true: Any, y_prob: Any) -> tuple[np.ndarray, float]:
    """One-vs-rest ROC-AUC per class and their macro mean.

    Args:
        y_true: (n,) true class ids.
        y_prob: (n, C) class scores or probabilities.

    Returns:
        ``(per_class, macro)``: (C,) AUC with ``nan`` for a class with no positives or no negatives,
        and the mean over the defined classes (``nan`` when none is defined).
    """
    t = _labels(y_true, "y_true")
    p = _probs(y_prob, t.size)
    num_classes = p.shape[1]
    if t.size and (t.min() < 0 or t.max() >= num_classes):
        raise ValueError(
            f"y_true holds class ids outside [0, {num_classes}) (y_prob has {num_classes} columns)"
        )
    per_class = np.array([roc_auc_binary(t == c, p[:, c]) for c in range(num_classes)], np.float64)
    defined = per_class[~np.isnan(per_class)]
    macro = float(defined.mean()) if defined.size else float("nan")
    return per_class, macro


def average_precision_score(y_true_binary: Any, scores: Any) -> float:
    """Average precision of a binary ranking (area under the step PR curve, as scikit-learn).

    ``AP = sum_k (R_k - R_{k-1}) * P_k`` over the distinct score thresholds, highest first.

    Returns:
        AP in [0, 1]; ``nan`` when there are no positives.
    """
    y = np.asarray(y_true_binary).astype(bool).reshape(-1)
    s = np.asarray(scores, np.float64).reshape(-1)
    if y.shape != s.shape:
        raise ValueError(f"labels and scores must have the same length, got {y.shape[0]} and {s.shape[0]}")
    n_pos = int(y.sum())
    if n_pos == 0:
        return float("nan")
    precision, recall, _ = precision_recall_curve(y, s)
    # curve points are ordered by decreasing threshold; recall increases
    return float(np.sum(np.diff(np.concatenate([[0.0], recall])) * precision))


def precision_recall_curve(y_true_binary: Any, scores: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision and recall at each distinct score threshold, from the highest threshold down.

    Returns:
        ``(precision, recall, thresholds)``, each of length = number of distinct scores (empty when
        there are no samples). Recall is 0 everywhere when there are no positives.
    """
    y = np.asarray(y_true_binary).astype(bool).reshape(-1)
    s = np.asarray(scores, np.float64).reshape(-1)
    if y.size == 0:
        return np.zeros(0), np.zeros(0), np.zeros(0)
    order = np.argsort(-s, kind="mergesort")
    s_sorted = s[order]
    y_sorted = y[order]
    # last index of each run of equal scores
    last = np.concatenate([np.flatnonzero(np.diff(s_sorted)), [s.size - 1]])
    tp = np.cumsum(y_sorted)[last].astype(np.float64)
    fp = (last + 1) - tp
    n_pos = y.sum()
    precision = tp / (tp + fp)
    recall = tp / n_pos if n_pos else np.zeros_like(tp)
    return precision, recall, s_sorted[last]


def roc_curve(y_true_binary: Any, scores: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False- and true-positive rates at each distinct score threshold, starting at (0, 0).

    Returns:
        ``(fpr, tpr, thresholds)``; the first point has threshold ``+inf``. A rate whose class is absent
        (no positives or no negatives) is all zeros.
    """
    y = np.asarray(y_true_binary).astype(bool).reshape(-1)
    s = np.asarray(scores, np.float64).reshape(-1)
    if y.shape != s.shape:
        raise ValueError(f"labels and scores must have the same length, got {y.shape[0]} and {s.shape[0]}")
    if y.size == 0:
        return np.zeros(1), np.zeros(1), np.array([np.inf])
    order = np.argsort(-s, kind="mergesort")
    s_sorted = s[order]
    last = np.concatenate([np.flatnonzero(np.diff(s_sorted)), [s.size - 1]])
    tp = np.cumsum(y[order])[last].astype(np.float64)
    fp = (last + 1) - tp
    n_pos, n_neg = float(y.sum()), float(y.size - y.sum())
    tpr = tp / n_pos if n_pos else np.zeros_like(tp)
    fpr = fp / n_neg if n_neg else np.zeros_like(fp)
    return (
        np.concatenate([[0.0], fpr]),
        np.concatenate([[0.0], tpr]),
        np.concatenate([[np.inf], s_sorted[last]]),
    )


def classification_metrics(
    y_true: Any, y_prob: Any, class_names: Sequence[str], *, n_bins: int = 15
) -> dict[str, Any]:
    """All headline classification metrics in one JSON-ready dict.

    Args:
        y_true: (n,) true class ids.
        y_prob: (n, C) probabilities (rows sum to 1); the prediction is the argmax.
        class_names: C names in class-id order.
        n_bins: bins of the expected calibration error.

    Returns:
        ``{"accuracy", "macro_f1", "balanced_accuracy", "roc_auc_macro", "ece", "n",
        "per_class": {name: {"precision", "recall", "f1", "support", "roc_auc"}},
        "confusion": [[...], ...]}``. Undefined AUCs are ``nan`` (``None`` after ``json_safe``).
    """
    from maskops.evaluate.calibration import expected_calibration_error

    names = list(class_names)
    t = _labels(y_true, "y_true", len(names))
    p = _probs(y_prob, t.size)
    if p.shape[1] != len(names):
        raise ValueError(f"y_prob has {p.shape[1]} columns but {len(names)} class names were given: {names}")
    y_pred = p.argmax(axis=1) if t.size else np.zeros(0, np.int64)
    cm = confusion_matrix(t, y_pred, len(names))
    precision, recall, f1, support = precision_recall_f1(cm)
    auc, auc_macro = roc_auc_ovr(t, p)
    return {
        "n": int(t.size),
        "accuracy": accuracy(t, y_pred),
        "macro_f1": float(f1.mean()) if t.size else 0.0,
        "balanced_accuracy": balanced_accuracy(t, y_pred, len(names)),
        "roc_auc_macro": auc_macro,
        "ece": expected_calibration_error(p, t, n_bins=n_bins) if t.size else 0.0,
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
                "roc_auc": float(auc[i]),
            }
            for i, name in enumerate(names)
        },
        "confusion": cm.tolist(),
    }


def json_safe(value: Any) -> Any:
    """Recursively replace ``nan``/``inf`` floats with ``None`` and numpy scalars/arrays with Python types."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        v = float(value)
        return v if np.isfinite(v) else None
    return value
