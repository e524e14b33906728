"""PNG plots for evaluation reports (matplotlib with the Agg backend, imported inside each function)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from maskops.evaluate.calibration import ReliabilityBins

__all__ = [
    "plot_confusion_matrix",
    "plot_detection_pr",
    "plot_pr_curves",
    "plot_reliability",
    "plot_roc_curves",
]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path


def plot_confusion_matrix(cm: Any, class_names: Sequence[str], path: str | Path) -> Path:
    """Confusion matrix heat map: colour = row-normalised rate (recall), text = count and rate."""
    plt = _pyplot()
    cm = np.asarray(cm)
    rows = cm.sum(axis=1, keepdims=True)
    rate = np.divide(cm, rows, out=np.zeros(cm.shape, np.float64), where=rows > 0)
    k = len(class_names)
    fig, ax = plt.subplots(figsize=(1.6 * k + 2.5, 1.4 * k + 2))
    im = ax.imshow(rate, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046, label="fraction of true class")
    ax.set_xticks(range(k), class_names, rotation=30, ha="right")
    ax.set_yticks(range(k), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(k):
        for j in range(k):
            colour = "white" if rate[i, j] > 0.5 else "black"
            ax.text(j, i, f"{cm[i, j]}\n{rate[i, j]:.1%}", ha="center", va="center", color=colour, fontsize=9)
    ax.set_title("Confusion matrix")
    return _save(fig, path)


def plot_roc_curves(curves: Mapping[str, Mapping[str, Any]], path: str | Path) -> Path:
    """One-vs-rest ROC curves; ``curves[name] = {"fpr", "tpr", "auc"}``."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for name, c in curves.items():
        auc = c.get("auc")
        label = f"{name} (AUC {auc:.3f})" if auc is not None and np.isfinite(auc) else f"{name} (AUC n/a)"
        ax.plot(c["fpr"], c["tpr"], label=label)
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("ROC (one-vs-rest)")
    return _save(fig, path)


def plot_pr_curves(
    curves: Mapping[str, Mapping[str, Any]], path: str | Path, *, title: str = "Precision-recall"
) -> Path:
    """Precision-recall curves; ``curves[name] = {"recall", "precision", "ap"}``."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for name, c in curves.items():
        ap = c.get("ap")
        label = f"{name} (AP {ap:.3f})" if ap is not None and np.isfinite(ap) else f"{name} (AP n/a)"
        ax.step(c["recall"], c["precision"], where="post", label=label)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.legend(loc="lower left", fontsize=8)
    ax.set_title(title)
    return _save(fig, path)


def plot_reliability(
    bins: Mapping[str, ReliabilityBins], path: str | Path, *, title: str = "Reliability diagram"
) -> Path:
    """Reliability diagram: accuracy per confidence bin, one series per entry (e.g. before/after)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0, 1], [0, 1], "k--", lw=0.8, label="perfect calibration")
    markers = ["o", "s", "^", "D"]
    for k, (name, b) in enumerate(bins.items()):
        used = b.count > 0
        ax.plot(
            b.confidence[used],
            b.accuracy[used],
            marker=markers[k % len(markers)],
            label=f"{name} (ECE {b.ece:.3f})",
        )
    ax.set_xlabel("confidence (top label)")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(title)
    return _save(fig, path)


def plot_detection_pr(
    recall: Any, precision: Any, path: str | Path, *, name: str, ap: float, iou: float = 0.5
) -> Path:
    """Detection precision-recall curve of one class with its AP in the title."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 4.5))
    r = np.asarray(recall)
    p = np.asarray(precision)
    if r.size:
        envelope = np.maximum.accumulate(p[::-1])[::-1]
        ax.plot(r, p, lw=1, alpha=0.6, label="precision")
        ax.step(r, envelope, where="post", lw=1.5, label="interpolated")
        ax.legend(loc="lower left", fontsize=8)
    ap_text = f"{ap:.3f}" if np.isfinite(ap) else "n/a"
    ax.set_title(f"{name}: AP@{iou:g} = {ap_text}")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    return _save(fig, path)
