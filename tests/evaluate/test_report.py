from __future__ import annotations

import json

import numpy as np
import pytest

from maskops.evaluate.calibration import softmax
from maskops.evaluate.detection import evaluate_detections
from maskops.evaluate.metrics import roc_curve
from maskops.evaluate.report import (
    brightness_bucket,
    build_classification_report,
    size_bucket,
    slice_metrics,
    top_errors,
    write_detection_report,
    write_report,
)
from maskops.types import Detections

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_size_bucket_uses_shorter_side() -> None:
    b = size_bucket([[10, 100], [24, 30], [47.9, 60], [48, 48], [200, 50]])
    assert b.tolist() == ["<24px", "24-48px", "24-48px", ">=48px", ">=48px"]
    assert size_bucket(np.zeros((0, 2))).shape == (0,)
    with pytest.raises(ValueError, match="shape"):
        size_bucket([1, 2, 3])


def test_brightness_bucket_gray_mean() -> None:
    dark = np.full((4, 4, 3), 20, np.uint8)
    normal = np.full((4, 4), 120, np.uint8)
    bright = np.full((4, 4, 4), 250, np.uint8)
    # pure blue: gray = 0.114 * 255 = 29 -> dark, although the max channel is 255
    blue = np.zeros((4, 4, 3), np.uint8)
    blue[..., 0] = 255
    assert brightness_bucket([dark, normal, bright, blue]).tolist() == ["dark", "normal", "bright", "dark"]
    assert brightness_bucket([]).shape == (0,)


def test_slice_metrics_per_bucket() -> None:
    s = slice_metrics([0, 0, 1, 1, 2], [0, 1, 1, 1, 2], ["a", "a", "b", "b", "b"], 3)
    assert s["a"] == {"n": 2, "accuracy": 0.5, "macro_f1": pytest.approx((2 / 3 + 0) / 2)}
    assert s["b"] == {"n": 3, "accuracy": 1.0, "macro_f1": 1.0}
    with pytest.raises(ValueError, match="same length"):
        slice_metrics([0], [0, 1], ["a"], 2)


def test_roc_curve_matches_sklearn() -> None:
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(3)
    y = rng.random(200) > 0.6
    s = np.round(rng.random(200) + 0.3 * y, 2)
    fpr, tpr, _ = roc_curve(y, s)
    sk_fpr, sk_tpr, _ = sk.roc_curve(y, s, drop_intermediate=False)
    assert fpr == pytest.approx(sk_fpr)
    assert tpr == pytest.approx(sk_tpr)


def _data(n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    """Logits and labels drawn from softmax(logits): calibrated at T = 1."""
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=2.0, size=(n, 3))
    y = (rng.random(n)[:, None] > np.cumsum(softmax(logits), axis=1)).sum(axis=1)
    return y, logits


def test_build_and_write_classification_report(tmp_path) -> None:  # type: ignore[no-untyped-def]
    y, logits = _data()
    names = ["with_mask", "without_mask", "mask_weared_incorrect"]
    sizes = size_bucket(np.stack([np.arange(300) % 80 + 5] * 2, axis=1))
    report = build_classification_report(
        y,
        softmax(logits),
        names,
        slices={"size": sizes},
        probs_uncalibrated=softmax(logits * 4),
        info={"task": "facemask", "temperature": 1.0},
    )
    assert report.ece_before is not None and report.ece_before > report.ece_after
    assert list(report.slices["size"]) == ["<24px", "24-48px", ">=48px"]
    assert sum(b["n"] for b in report.slices["size"].values()) == 300
    paths = write_report(report, tmp_path / "rep")
    for name in ("confusion_matrix", "roc", "pr", "reliability"):
        assert paths[name].read_bytes()[:8] == PNG_MAGIC
    data = json.loads(paths["json"].read_text())
    assert data["metrics"]["n"] == 300
    assert data["ece_before"] == pytest.approx(report.ece_before)
    assert set(data["slices"]["size"]) == {"<24px", "24-48px", ">=48px"}
    md = paths["markdown"].read_text()
    assert "mask_weared_incorrect" in md and "ECE before calibration" in md and "Slice: size" in md


def test_top_errors_hand_computed() -> None:
    y = np.array([0, 1, 2, 0, 1])
    p = np.array(
        [
            [0.9, 0.05, 0.05],  # right
            [0.6, 0.3, 0.1],  # wrong, 0.6
            [0.1, 0.8, 0.1],  # wrong, 0.8
            [0.2, 0.2, 0.6],  # wrong, 0.6 (tie with row 1: sample order kept)
            [0.1, 0.85, 0.05],  # right
        ]
    )
    assert top_errors(y, p).tolist() == [2, 1, 3]
    assert top_errors(y, p, k=2).tolist() == [2, 1]
    assert top_errors(y[:0], p[:0]).tolist() == []


def test_report_lists_mistakes_with_a_gallery(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import cv2

    y = np.array([0, 1, 1, 0])
    p = np.array([[0.9, 0.1], [0.7, 0.3], [0.2, 0.8], [0.45, 0.55]])
    names = []
    for i in range(4):
        path = tmp_path / f"img{i}.png"
        cv2.imwrite(str(path), np.full((12 + i, 10, 3), 40 * i, np.uint8))
        names.append(str(path))
    report = build_classification_report(y, p, ["a", "b"], sample_names=names)
    assert [e["sample"] for e in report.errors] == [names[1], names[3]]
    assert report.errors[0] == {
        "sample": names[1],
        "true": "b",
        "predicted": "a",
        "confidence": 0.7,
        "p_true": 0.3,
    }
    paths = write_report(report, tmp_path / "rep")
    assert paths["errors"].read_bytes()[:8] == PNG_MAGIC
    assert json.loads(paths["json"].read_text())["errors"][1]["predicted"] == "b"
    assert "Most confident mistakes (2 shown" in paths["markdown"].read_text()
    # samples that are not readable images: the list stays, no gallery is written
    report = build_classification_report(y, p, ["a", "b"], sample_names=["x", "y", "z", "w"])
    paths = write_report(report, tmp_path / "rep2")
    assert "errors" not in paths and not (tmp_path / "rep2" / "errors.png").exists()
    with pytest.raises(ValueError, match="sample_names has 3 names but there are 4 samples"):
        build_classification_report(y, p, ["a", "b"], sample_names=names[:3])


def test_report_rejects_bad_slice_length() -> None:
    y, logits = _data(10)
    with pytest.raises(ValueError, match="slice 'size'"):
        build_classification_report(y, softmax(logits), ["a", "b", "c"], slices={"size": ["x"] * 3})


def test_write_detection_report(tmp_path) -> None:  # type: ignore[no-untyped-def]
    gts = [Detections.from_lists([[0, 0, 10, 10], [20, 0, 30, 10]], [0, 1])]
    preds = [Detections.from_lists([[0, 0, 10, 10]], [0], [0.9])]
    res = evaluate_detections(preds, gts, 3, class_names=["a", "b", "c"])
    paths = write_detection_report(res, tmp_path, info={"detector": "yunet"})
    assert paths["pr_a"].read_bytes()[:8] == PNG_MAGIC
    data = json.loads(paths["json"].read_text())
    assert data["map50"] == pytest.approx(0.5)
    assert data["per_class"]["c"]["ap50"] is None
    assert "| a | 1.0000 |" in paths["markdown"].read_text()


def test_slice_metrics_recall_per_class_counts() -> None:
    from maskops.evaluate.report import slice_metrics

    y_true = [0, 0, 2, 2, 2, 1, 0, 2]
    y_pred = [0, 1, 2, 0, 2, 1, 0, 2]
    b = ["voc", "voc", "voc", "voc", "ilc", "ilc", "ilc", "ilc"]
    out = slice_metrics(y_true, y_pred, b, 3, class_names=["a", "b", "c"])
    assert out["voc"]["recall"] == {
        "a": {"recall": 0.5, "hits": 1, "support": 2},
        "c": {"recall": 0.5, "hits": 1, "support": 2},
    }
    assert out["ilc"]["recall"]["c"] == {"recall": 1.0, "hits": 2, "support": 2}
    assert "b" in out["ilc"]["recall"] and "b" not in out["voc"]["recall"]
    assert "recall" not in slice_metrics(y_true, y_pred, b, 3)["voc"]


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("facemask-voc", "facemask-voc"),
        ("synth_under_nose:facemask-ilc2021", "facemask-ilc2021"),
        ("facemask-photos:whole", "facemask-photos"),
        ("", ""),
    ],
)
def test_row_source(source: str, expected: str) -> None:
    from types import SimpleNamespace

    from maskops.evaluate.run import row_source

    assert row_source(SimpleNamespace(source=source)) == expected
