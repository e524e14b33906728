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
    "plot_error_gallery",
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


def plot_error_gallery(
    errors: Sequence[Mapping[str, Any]], path: str | Path, columns: int = 8
) -> Path | None:
    """Contact sheet of misclassified images: each titled ``true -> predicted (confidence)``.

    Args:
        errors: ``ClassificationReport.errors`` entries; ``sample`` must be an image path.
        path: the PNG to write.
        columns: images per row.

    Returns:
        The path, or ``None`` when no sample could be read as an image (nothing is written).
    """
    import cv2

    tiles = []
    for e in errors:
        img = cv2.imread(str(e["sample"]), cv2.IMREAD_COLOR)
        if img is not None and img.size:
            tiles.append((cv2.cvtColor(img, cv2.COLOR_BGR2RGB), e))
    if not tiles:
        return None
    plt = _pyplot()
    cols = max(1, min(columns, len(tiles)))
    rows = -(-len(tiles) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.7 * cols, 1.95 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, (img, e) in zip(axes.ravel(), tiles, strict=False):
        h, w = img.shape[:2]
        ax.imshow(img, interpolation="nearest")
        ax.set_title(
            f"{e['true'][:12]}\n-> {e['predicted'][:12]} {float(e['confidence']):.2f}\n{w}x{h} px",
            fontsize=6.5,
        )
    fig.suptitle("Most confident mistakes (true -> predicted, confidence)", fontsize=9)
    return _save(fig, path)
