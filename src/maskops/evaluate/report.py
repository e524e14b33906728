"""Evaluation reports: build (pure) and write (markdown, JSON and PNG plots).

``build_classification_report`` computes everything from labels and probabilities; ``write_report``
only formats and plots. Slices break the headline metrics down by a per-sample bucket label, e.g. face
size (``size_bucket``) or brightness (``brightness_bucket``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np

from maskops.evaluate.calibration import ReliabilityBins, reliability_bins
from maskops.evaluate.detection import DetectionEvaluation
from maskops.evaluate.metrics import (
    accuracy,
    average_precision_score,
    classification_metrics,
    json_safe,
    macro_f1,
    precision_recall_curve,
    roc_curve,
)

logger = logging.getLogger(__name__)

__all__ = [
    "BRIGHTNESS_BUCKETS",
    "SIZE_BUCKETS",
    "ClassificationReport",
    "brightness_bucket",
    "build_classification_report",
    "size_bucket",
    "slice_metrics",
    "write_detection_report",
    "write_report",
]

SIZE_BUCKETS: tuple[str, ...] = ("<24px", "24-48px", ">=48px")
BRIGHTNESS_BUCKETS: tuple[str, ...] = ("dark", "normal", "bright")


def size_bucket(box_wh: Any, edges: tuple[float, float] = (24.0, 48.0)) -> np.ndarray:
    """Face-size bucket of each box from the shorter side of its width and height.

    Args:
        box_wh: (n, 2) widths and heights in pixels.
        edges: the two bucket edges ``(small, large)``.

    Returns:
        (n,) array of ``"<24px"``, ``"24-48px"`` or ``">=48px"`` (labels follow ``edges``).
    """
    wh = np.asarray(box_wh, np.float64)
    if wh.size == 0:
        return np.zeros(0, dtype=object)
    if wh.ndim != 2 or wh.shape[1] != 2:
        raise ValueError(f"box_wh must have shape (n, 2), got {wh.shape}")
    lo, hi = edges
    labels = np.array([f"<{lo:g}px", f"{lo:g}-{hi:g}px", f">={hi:g}px"], dtype=object)
    side = wh.min(axis=1)
    return labels[np.digitize(side, [lo, hi])]


def brightness_bucket(
    images_bgr: Sequence[np.ndarray], edges: tuple[float, float] = (70.0, 180.0)
) -> np.ndarray:
    """Brightness bucket of each image from the mean of its gray values (0..255).

    Args:
        images_bgr: uint8 images (BGR, BGRA or gray).
        edges: ``(dark, bright)``: mean < dark is ``"dark"``, mean >= bright is ``"bright"``.

    Returns:
        (n,) array of ``"dark"``, ``"normal"`` or ``"bright"``.
    """
    means = np.array([_gray_mean(img) for img in images_bgr], np.float64)
    labels = np.array(BRIGHTNESS_BUCKETS, dtype=object)
    return labels[np.digitize(means, list(edges))] if means.size else np.zeros(0, dtype=object)


def _gray_mean(img: np.ndarray) -> float:
    a = np.asarray(img, np.float64)
    if a.ndim == 2:
        return float(a.mean())
    if a.ndim == 3 and a.shape[2] in (1, 3, 4):
        if a.shape[2] == 1:
            return float(a.mean())
        # ITU-R BT.601 weights, as cv2.cvtColor(BGR2GRAY)
        gray = 0.114 * a[..., 0] + 0.587 * a[..., 1] + 0.299 * a[..., 2]
        return float(gray.mean())
    raise ValueError(f"image must be HxW, HxWx1, HxWx3 or HxWx4, got shape {a.shape}")


def slice_metrics(
    y_true: Any,
    y_pred: Any,
    buckets: Any,
    num_classes: int,
    order: Sequence[str] | None = None,
    class_names: Sequence[str] | None = None,
) -> dict[str, dict[str, Any]]:
    """Accuracy, macro-F1 and n per bucket (and, with ``class_names``, recall per class).

    Args:
        y_true: (n,) true class ids.
        y_pred: (n,) predicted class ids.
        buckets: (n,) bucket label of each sample.
        num_classes: C, to check the class ids. Within a bucket, macro-F1 averages the classes that occur
            there (true or predicted), so a bucket without the rare class is not punished for its absence.
        order: bucket display order; unknown extra buckets follow, sorted.
        class_names: when given, each bucket also has ``"recall": {class: {"recall", "hits", "support"}}``
            for the classes present in it (recall is ``nan`` never: absent classes are left out).

    Returns:
        ``{bucket: {"n", "accuracy", "macro_f1"[, "recall"]}}``.
    """
    t = np.asarray(y_true, np.int64).reshape(-1)
    p = np.asarray(y_pred, np.int64).reshape(-1)
    for name, arr in (("y_true", t), ("y_pred", p)):
        if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
            raise ValueError(f"{name} holds class ids outside [0, {num_classes})")
    b = np.asarray(buckets, dtype=object).reshape(-1)
    if not t.size == p.size == b.size:
        raise ValueError(
            f"y_true, y_pred and buckets must have the same length, got {t.size}, {p.size}, {b.size}"
        )
    present = [str(v) for v in dict.fromkeys(b.tolist())]
    names = [o for o in (order or []) if o in present] + sorted(set(present) - set(order or []))
    if class_names is not None and len(class_names) != num_classes:
        raise ValueError(f"class_names has {len(class_names)} names for {num_classes} classes")
    out: dict[str, dict[str, Any]] = {}
    for name in names:
        sel = b == name
        tt, pp = t[sel], p[sel]
        classes = np.union1d(tt, pp)
        remap = {c: i for i, c in enumerate(classes.tolist())}
        f1 = macro_f1([remap[c] for c in tt.tolist()], [remap[c] for c in pp.tolist()], max(len(classes), 1))
        out[name] = {"n": int(sel.sum()), "accuracy": accuracy(tt, pp), "macro_f1": f1}
        if class_names is not None:
            recall: dict[str, dict[str, float | int]] = {}
            for c, cname in enumerate(class_names):
                support = int((tt == c).sum())
                if support:
                    hits = int(((tt == c) & (pp == c)).sum())
                    recall[cname] = {"recall": hits / support, "hits": hits, "support": support}
            out[name]["recall"] = recall
    return out


@dataclass
class ClassificationReport:
    """Everything a classification evaluation says, ready to be written.

    Attributes:
        class_names: names in class-id order.
        metrics: ``classification_metrics`` of the (calibrated) probabilities.
        metrics_uncalibrated: the same for the uncalibrated probabilities, when given.
        reliability: ``{"calibrated": bins, "uncalibrated": bins}`` (the latter when given).
        roc: ``{class: {"fpr", "tpr", "auc"}}`` one-vs-rest.
        pr: ``{class: {"recall", "precision", "ap"}}`` one-vs-rest.
        slices: ``{slice_name: {bucket: {"n", "accuracy", "macro_f1"}}}``.
        info: free-form context (task, model, split, temperature, skipped files …).
        errors: the most confident mistakes, most confident first: ``{"sample", "true", "predicted",
            "confidence", "p_true"}`` (``sample`` is the name given, e.g. the image path).
    """

    class_names: list[str]
    metrics: dict[str, Any]
    metrics_uncalibrated: dict[str, Any] | None = None
    reliability: dict[str, ReliabilityBins] = field(default_factory=dict)
    roc: dict[str, dict[str, Any]] = field(default_factory=dict)
    pr: dict[str, dict[str, Any]] = field(default_factory=dict)
    slices: dict[str, dict[str, dict[str, float | int]]] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    errors: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ece_before(self) -> float | None:
        return None if self.metrics_uncalibrated is None else float(self.metrics_uncalibrated["ece"])

    @property
    def ece_after(self) -> float:
        return float(self.metrics["ece"])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (curves are thinned to at most 200 points each; ``nan`` becomes null)."""
        return json_safe(
            {
                "info": self.info,
                "class_names": self.class_names,
                "metrics": self.metrics,
                "metrics_uncalibrated": self.metrics_uncalibrated,
                "ece_before": self.ece_before,
                "ece_after": self.ece_after,
                "slices": self.slices,
                "reliability": {k: v.to_dict() for k, v in self.reliability.items()},
                "roc": {k: _thin(v, ("fpr", "tpr")) for k, v in self.roc.items()},
                "pr": {k: _thin(v, ("recall", "precision")) for k, v in self.pr.items()},
                "errors": self.errors,
            }
        )


def top_errors(y_true: Any, y_prob: Any, k: int = 48) -> np.ndarray:
    """Indices of the ``k`` most confident mistakes (argmax != truth), most confident first.

    Ties keep the sample order (a stable sort), so the result is deterministic.
    """
    t = np.asarray(y_true, np.int64).reshape(-1)
    p = np.asarray(y_prob, np.float64)
    if t.size == 0 or k <= 0:
        return np.zeros(0, np.int64)
    wrong = np.flatnonzero(p.argmax(axis=1) != t)
    order = np.argsort(-p[wrong].max(axis=1), kind="stable")
    return wrong[order[:k]].astype(np.int64)


def _thin(curve: Mapping[str, Any], keys: Sequence[str], max_points: int = 200) -> dict[str, Any]:
    out = dict(curve)
    n = len(curve[keys[0]])
    idx = np.unique(np.linspace(0, n - 1, min(n, max_points)).round().astype(int)) if n else np.zeros(0, int)
    for k in keys:
        out[k] = np.asarray(curve[k])[idx].round(5).tolist()
    return out


def build_classification_report(
    y_true: Any,
    y_prob: Any,
    class_names: Sequence[str],
    *,
    slices: Mapping[str, Any] | None = None,
    probs_uncalibrated: Any | None = None,
    info: Mapping[str, Any] | None = None,
    n_bins: int = 15,
    sample_names: Sequence[str] | None = None,
    max_errors: int = 48,
) -> ClassificationReport:
    """Compute the classification report (pure; nothing is written).

    Args:
        y_true: (n,) true class ids.
        y_prob: (n, C) calibrated probabilities (the model's output as served).
        class_names: C names in class-id order.
        slices: ``{slice_name: (n,) bucket labels}``; each gives accuracy / macro-F1 / n per bucket (the
            ``source`` slice, one bucket per data source, also recall per class).
        probs_uncalibrated: optional (n, C) probabilities before temperature scaling.
        info: context copied into the report (task, model, split …).
        n_bins: calibration bins.
        sample_names: (n,) names of the samples (e.g. image paths); with them the report lists the
            ``max_errors`` most confident mistakes.
        max_errors: how many mistakes to list.

    Returns:
        A ``ClassificationReport``.

    Raises:
        ValueError: shape mismatches (a slice with the wrong length names the slice).
    """
    names = list(class_names)
    t = np.asarray(y_true, np.int64).reshape(-1)
    p = np.asarray(y_prob, np.float64)
    metrics = classification_metrics(t, p, names, n_bins=n_bins)
    report = ClassificationReport(class_names=names, metrics=metrics, info=dict(info or {}))
    report.reliability["calibrated"] = reliability_bins(p, t, n_bins)
    if probs_uncalibrated is not None:
        pu = np.asarray(probs_uncalibrated, np.float64)
        if pu.shape != p.shape:
            raise ValueError(f"probs_uncalibrated must have shape {p.shape}, got {pu.shape}")
        report.metrics_uncalibrated = classification_metrics(t, pu, names, n_bins=n_bins)
        report.reliability["uncalibrated"] = reliability_bins(pu, t, n_bins)
    for c, name in enumerate(names):
        fpr, tpr, _ = roc_curve(t == c, p[:, c]) if t.size else (np.zeros(1), np.zeros(1), None)
        report.roc[name] = {"fpr": fpr, "tpr": tpr, "auc": metrics["per_class"][name]["roc_auc"]}
        prec, rec, _ = precision_recall_curve(t == c, p[:, c]) if t.size else (np.zeros(0), np.zeros(0), None)
        ap = average_precision_score(t == c, p[:, c]) if t.size else float("nan")
        report.pr[name] = {
            "recall": np.concatenate([[0.0], rec]),
            "precision": np.concatenate([[1.0], prec]),
            "ap": ap,
        }
    y_pred = p.argmax(axis=1) if t.size else np.zeros(0, np.int64)
    for slice_name, buckets in (slices or {}).items():
        b = np.asarray(buckets, dtype=object).reshape(-1)
        if b.size != t.size:
            raise ValueError(f"slice {slice_name!r} has {b.size} labels but there are {t.size} samples")
        order = {"size": SIZE_BUCKETS, "brightness": BRIGHTNESS_BUCKETS}.get(slice_name)
        # per-class recall where a bucket is a whole test set (the rare class's count matters there)
        per_class = names if slice_name == "source" else None
        report.slices[slice_name] = slice_metrics(
            t, y_pred, b, len(names), order=order, class_names=per_class
        )
    if sample_names is not None:
        if len(sample_names) != t.size:
            raise ValueError(f"sample_names has {len(sample_names)} names but there are {t.size} samples")
        for i in top_errors(t, p, max_errors):
            report.errors.append(
                {
                    "sample": str(sample_names[i]),
                    "true": names[t[i]],
                    "predicted": names[int(y_pred[i])],
                    "confidence": round(float(p[i].max()), 4),
                    "p_true": round(float(p[i, t[i]]), 4),
                }
            )
    return report


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float | np.floating):
        return "n/a" if not np.isfinite(v) else f"{v:.{digits}f}"
    return str(v)


def write_report(report: ClassificationReport, out_dir: str | Path) -> dict[str, Path]:
    """Write ``report.md``, ``report.json`` and the PNG plots into ``out_dir``.

    Plots: ``confusion_matrix.png``, ``roc.png``, ``pr.png`` and ``reliability.png`` (before and after
    calibration when the uncalibrated probabilities were given).

    Returns:
        Name -> written path.
    """
    from maskops.evaluate import plots

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    m = report.metrics
    paths: dict[str, Path] = {
        "confusion_matrix": plots.plot_confusion_matrix(
            np.asarray(m["confusion"]), report.class_names, out / "confusion_matrix.png"
        ),
        "roc": plots.plot_roc_curves(report.roc, out / "roc.png"),
        "pr": plots.plot_pr_curves(report.pr, out / "pr.png"),
    }
    rel = {}
    if "uncalibrated" in report.reliability:
        rel["before calibration"] = report.reliability["uncalibrated"]
        rel["after calibration"] = report.reliability["calibrated"]
    else:
        rel["model"] = report.reliability["calibrated"]
    paths["reliability"] = plots.plot_reliability(rel, out / "reliability.png")
    if report.errors:
        gallery = plots.plot_error_gallery(report.errors, out / "errors.png")
        if gallery is not None:
            paths["errors"] = gallery

    json_path = out / "report.json"
    json_path.write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")
    paths["json"] = json_path
    md_path = out / "report.md"
    md_path.write_text(_markdown(report), encoding="utf-8")
    paths["markdown"] = md_path
    logger.info("wrote evaluation report to %s", out)
    return paths


def _markdown(report: ClassificationReport) -> str:
    m = report.metrics
    info = report.info
    lines = ["# Classification evaluation", ""]
    if info:
        lines += [f"- **{k}**: {v}" for k, v in info.items() if not isinstance(v, dict | list)]
        lines.append("")
    lines += [
        "## Headline",
        "",
        "| metric | value |",
        "| --- | --- |",
        f"| n | {m['n']} |",
        f"| accuracy | {_fmt(m['accuracy'])} |",
        f"| macro-F1 | {_fmt(m['macro_f1'])} |",
        f"| balanced accuracy | {_fmt(m['balanced_accuracy'])} |",
        f"| ROC-AUC (macro, one-vs-rest) | {_fmt(m['roc_auc_macro'])} |",
        f"| ECE (15 bins) | {_fmt(m['ece'])} |",
    ]
    if report.ece_before is not None:
        lines.append(f"| ECE before calibration | {_fmt(report.ece_before)} |")
    lines += ["", "## Per class", "", "| class | precision | recall | F1 | ROC-AUC | AP | support |"]
    lines.append("| --- | --- | --- | --- | --- | --- | --- |")
    for name, pc in m["per_class"].items():
        lines.append(
            f"| {name} | {_fmt(pc['precision'])} | {_fmt(pc['recall'])} | {_fmt(pc['f1'])} | "
            f"{_fmt(pc['roc_auc'])} | {_fmt(report.pr.get(name, {}).get('ap'))} | {pc['support']} |"
        )
    lines += ["", "## Confusion matrix (rows true, columns predicted)", ""]
    lines.append("| true \\ predicted | " + " | ".join(report.class_names) + " |")
    lines.append("| --- " * (len(report.class_names) + 1) + "|")
    for name, row in zip(report.class_names, m["confusion"], strict=True):
        lines.append(f"| {name} | " + " | ".join(str(v) for v in row) + " |")
    lines += ["", "![confusion matrix](confusion_matrix.png)", ""]
    lines += ["## Calibration", ""]
    if "temperature" in info:
        lines.append(f"Temperature: {_fmt(float(info['temperature']), 3)}.")
    if report.ece_before is not None:
        lines.append(f"ECE before calibration {_fmt(report.ece_before)}, after {_fmt(report.ece_after)}.")
    else:
        lines.append(f"ECE {_fmt(report.ece_after)}.")
    lines += ["", "![reliability diagram](reliability.png)", ""]
    for slice_name, buckets in report.slices.items():
        with_recall = any("recall" in s for s in buckets.values())
        lines += [
            f"## Slice: {slice_name}",
            "",
            "| bucket | n | accuracy | macro-F1 |" + (" recall per class (found/n) |" if with_recall else ""),
            "| --- | --- | --- | --- |" + (" --- |" if with_recall else ""),
        ]
        for bucket, s in buckets.items():
            row = f"| {bucket} | {s['n']} | {_fmt(s['accuracy'])} | {_fmt(s['macro_f1'])} |"
            if with_recall:
                per = cast(dict[str, dict[str, Any]], s.get("recall", {}))
                row += (
                    " "
                    + "; ".join(
                        f"{c} {_fmt(r['recall'], 3)} ({r['hits']}/{r['support']})" for c, r in per.items()
                    )
                    + " |"
                )
            lines.append(row)
        lines.append("")
    lines += ["## Curves", "", "![ROC](roc.png) ![PR](pr.png)", ""]
    if report.errors:
        lines += [
            f"## Most confident mistakes ({len(report.errors)} shown, most confident first)",
            "",
            "![mistakes](errors.png)",
            "",
            "| sample | true | predicted | confidence | p(true) |",
            "| --- | --- | --- | --- | --- |",
        ]
        lines += [
            f"| {e['sample']} | {e['true']} | {e['predicted']} | {e['confidence']:.3f} | {e['p_true']:.3f} |"
            for e in report.errors
        ]
        lines.append("")
    return "\n".join(lines)


def write_detection_report(
    result: DetectionEvaluation, out_dir: str | Path, *, info: Mapping[str, Any] | None = None
) -> dict[str, Path]:
    """Write a detection evaluation: ``report.md`` (AP table), ``report.json`` and ``pr_<class>.png``.

    Returns:
        Name -> written path.
    """
    from maskops.evaluate import plots

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    per_class = result.per_class()
    for c, name in enumerate(result.class_names):
        curve = result.pr_curves[name]
        paths[f"pr_{name}"] = plots.plot_detection_pr(
            curve.recall, curve.precision, out / f"pr_{name}.png", name=name, ap=float(result.ap50[c])
        )
    data = {"info": dict(info or {}), **result.to_dict(include_curves=False)}
    json_path = out / "report.json"
    json_path.write_text(json.dumps(json_safe(data), indent=2) + "\n", encoding="utf-8")
    paths["json"] = json_path
    lines = ["# Detection evaluation", ""]
    lines += [f"- **{k}**: {v}" for k, v in (info or {}).items() if not isinstance(v, dict | list)]
    lines += [
        f"- **images**: {result.num_images}",
        "",
        f"**mAP@0.5 = {_fmt(result.map50)}**, mAP@0.5:0.95 = {_fmt(result.map50_95)} "
        "(VOC all-point AP; classes without ground truth excluded).",
        "",
        "| class | AP@0.5 | AP@0.5:0.95 | ground truth | predictions | max recall |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, pc in per_class.items():
        lines.append(
            f"| {name} | {_fmt(pc['ap50'])} | {_fmt(pc['ap50_95'])} | {pc['gt']} | {pc['predictions']} | "
            f"{_fmt(pc['max_recall'])} |"
        )
    lines.append("")
    lines += [f"![{name}](pr_{name}.png)" for name in result.class_names]
    md_path = out / "report.md"
    md_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    paths["markdown"] = md_path
    return paths
