"""Detection evaluation end to end on a tiny generated VOC set with hand-computed AP."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from maskops.evaluate.detection_run import (
    DetectionDataError,
    Scored,
    evaluate_detection,
    face_recall_by_size,
    load_voc_split,
    oracle_labels,
    score_faces,
)
from maskops.types import Detections

CLASSES = ["with_mask", "without_mask", "mask_weared_incorrect"]

# image stem -> (width, height, [(name, xmin, ymin, xmax, ymax)])
IMAGES = {
    "a": (64, 48, [("with_mask", 4, 4, 20, 20), ("without_mask", 30, 4, 46, 20)]),
    "b": (80, 48, [("mask_weared_incorrect", 10, 10, 30, 30)]),
    "c": (40, 40, []),
}


def _xml(stem: str, width: int, height: int, objects: list[tuple[str, int, int, int, int]]) -> str:
    objs = "".join(
        f"<object><name>{n}</name><difficult>0</difficult><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin>"
        f"<xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
        for n, x1, y1, x2, y2 in objects
    )
    return (
        f"<annotation><filename>{stem}.png</filename><size><width>{width}</width><height>{height}</height>"
        f"<depth>3</depth></size>{objs}</annotation>"
    )


@pytest.fixture
def voc(tmp_path: Path) -> Path:
    root = tmp_path / "voc"
    (root / "images").mkdir(parents=True)
    (root / "annotations").mkdir()
    for stem, (w, h, objs) in IMAGES.items():
        cv2.imwrite(str(root / "images" / f"{stem}.png"), np.full((h, w, 3), 128, np.uint8))
        (root / "annotations" / f"{stem}.xml").write_text(_xml(stem, w, h, objs), encoding="utf-8")
    splits = {"train": ["c"], "val": [], "test": ["a", "b", "c"]}
    (root / "splits.json").write_text(json.dumps(splits), encoding="utf-8")
    return root


def _faces(boxes: list[list[float]], face: list[float], probs: list[list[float]]) -> Scored:
    det = Detections(
        xyxy=np.asarray(boxes, np.float32).reshape(-1, 4),
        confidence=np.asarray(face, np.float32),
        class_id=np.full(len(face), -1),
        face_score=np.asarray(face, np.float32),
    )
    return Scored(det, np.asarray(probs, np.float32).reshape(-1, 3))


PREDICTIONS = {
    # image width -> prediction
    64: _faces([[4, 4, 20, 20], [30, 4, 46, 20]], [0.9, 0.8], [[0.8, 0.1, 0.1], [0.6, 0.3, 0.1]]),
    80: _faces([[10, 10, 30, 30], [50, 10, 70, 30]], [0.5, 0.9], [[0.2, 0.2, 0.6], [0.1, 0.1, 0.8]]),
    40: _faces([], [], []),
}


def fake_predict(image: np.ndarray) -> Scored:
    return PREDICTIONS[image.shape[1]]


def test_load_voc_split_reads_ground_truth(voc: Path) -> None:
    items = load_voc_split(voc, "test", CLASSES)
    assert [it.stem for it in items] == ["a", "b", "c"]
    assert items[0].gt.class_id.tolist() == [0, 1]
    assert items[0].gt.xyxy.tolist() == [[4, 4, 20, 20], [30, 4, 46, 20]]
    assert (items[1].width, items[1].height) == (80, 48)
    assert len(items[2].gt) == 0


def test_map_hand_computed_argmax(voc: Path, tmp_path: Path) -> None:
    items = load_voc_split(voc, "test", CLASSES)
    run = evaluate_detection(fake_predict, items, CLASSES, out_dir=tmp_path / "report", progress=False)
    ev = run.evaluation
    # with_mask: 0.72 TP, 0.48 FP -> AP 1; without_mask: its face was called with_mask -> AP 0;
    # incorrect: a false positive (0.72) ranked above the true positive (0.30) -> AP 0.5
    assert ev.ap50.tolist() == pytest.approx([1.0, 0.0, 0.5])
    assert run.map50 == pytest.approx(0.5)
    assert run.map50_95 == pytest.approx(0.5)  # every true positive is exact, so every IoU threshold agrees
    assert run.face_recall["all"] == {"n": 3, "found": 3, "recall": 1.0}
    assert run.face_recall["16-32px"]["n"] == 3
    assert run.info["scoring"] == "face_x_class"
    for name in ("report.md", "report.json", "pr.png", *(f"pr_{c}.png" for c in CLASSES)):
        assert (tmp_path / "report" / name).is_file(), name
    data = json.loads((tmp_path / "report" / "report.json").read_text())
    assert data["map50"] == pytest.approx(0.5)
    assert data["face_recall"]["all"]["recall"] == 1.0
    assert "Face detector recall" in (tmp_path / "report" / "report.md").read_text()


def test_map_hand_computed_multi_label(voc: Path) -> None:
    items = load_voc_split(voc, "test", CLASSES)
    run = evaluate_detection(fake_predict, items, CLASSES, multi_label=True, progress=False)
    # without_mask now has its face at 0.8 * 0.3 = 0.24, ranked above every other without_mask guess
    assert run.evaluation.ap50.tolist() == pytest.approx([1.0, 1.0, 0.5])
    assert run.map50 == pytest.approx(2.5 / 3)


def test_uncertain_faces_are_scored_by_argmax(voc: Path) -> None:
    """A pipeline result whose class_id is -1 (uncertain) still counts with its argmax class."""
    items = load_voc_split(voc, "test", CLASSES)[:1]
    pred = PREDICTIONS[64]
    uncertain = Scored(pred.detections.replace(class_id=np.full(2, -1)), pred.probs)
    run = evaluate_detection(lambda _img: uncertain, items, CLASSES, progress=False)
    assert run.evaluation.ap50[0] == pytest.approx(1.0)


def test_score_faces_modes() -> None:
    pred = PREDICTIONS[64]
    assert score_faces(pred).confidence.tolist() == pytest.approx([0.72, 0.48])
    assert score_faces(pred, scoring="class").confidence.tolist() == pytest.approx([0.8, 0.6])
    assert score_faces(pred, scoring="face").confidence.tolist() == pytest.approx([0.9, 0.8])
    assert score_faces(pred, scoring="sqrt").confidence.tolist() == pytest.approx(np.sqrt([0.72, 0.48]))
    multi = score_faces(pred, multi_label=True)
    assert multi.class_id.tolist() == [0, 1, 2, 0, 1, 2]
    assert multi.confidence.tolist() == pytest.approx([0.72, 0.09, 0.09, 0.48, 0.24, 0.08])
    with pytest.raises(ValueError, match="unknown scoring"):
        score_faces(pred, scoring="best")
    with pytest.raises(ValueError, match="probs must have shape"):
        score_faces(Scored(pred.detections, np.zeros((3, 3))))


def test_oracle_labels_and_recall_by_size() -> None:
    gt = Detections.from_lists([[0, 0, 10, 10], [20, 0, 60, 40]], [2, 1])
    faces = Detections.from_lists([[1, 0, 11, 10], [100, 100, 110, 110], [20, 0, 40, 40]], [-1, -1, -1])
    probs = oracle_labels(faces, gt, 3).probs
    assert probs.argmax(1).tolist() == [2, 0, 1]  # no overlap -> class 0
    rec = face_recall_by_size([faces], [gt])
    # the 10 px face is found (IoU 0.82); the 40 px one at IoU 0.5 exactly counts as found too
    assert rec["<16px"] == {"n": 1, "found": 1, "recall": 1.0}
    assert rec["32-64px"]["found"] == 1
    assert np.isnan(rec[">=64px"]["recall"])


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda root: (root / "splits.json").unlink(), "splits file not found"),
        (lambda root: None, "no split 'holdout'"),
        (lambda root: (root / "annotations" / "b.xml").unlink(), "has no xml"),
        (lambda root: (root / "images" / "b.png").unlink(), "has no image file"),
        (
            lambda root: (root / "annotations" / "a.xml").write_text(
                _xml("a", 64, 48, [("mask", 1, 1, 5, 5)]), encoding="utf-8"
            ),
            r"a\.xml: <object> #0 <name> is 'mask'",
        ),
        (lambda root: (root / "annotations" / "a.xml").write_text("<annotation>", encoding="utf-8"), "a.xml"),
    ],
)
def test_clear_errors(voc: Path, change, match: str) -> None:  # type: ignore[no-untyped-def]
    change(voc)
    split = "holdout" if "holdout" in match else "test"
    with pytest.raises(DetectionDataError, match=match):
        load_voc_split(voc, split, CLASSES)


def test_predict_with_wrong_probs_shape_is_named(voc: Path) -> None:
    items = load_voc_split(voc, "test", CLASSES)[:1]
    bad = Scored(PREDICTIONS[64].detections, np.zeros((2, 2)))
    with pytest.raises(ValueError, match="probs of shape"):
        evaluate_detection(lambda _img: bad, items, CLASSES, progress=False)


def test_select_voc_sources_by_name_all_and_unknown() -> None:
    from maskops.config import TaskConfig
    from maskops.evaluate.detection_run import DetectionDataError, select_voc_sources

    cfg = TaskConfig.model_validate(
        {
            "name": "t",
            "kind": "detection",
            "classes": ["with_mask", "without_mask"],
            "sources": [
                {"name": "voc-a", "kind": "voc", "path": "a", "splits_file": "splits.json", "crop": "boxes"},
                {"name": "photos", "kind": "folder", "path": "p", "crop": "face"},
                {"name": "voc-b", "kind": "voc", "path": "b", "splits_file": "splits.json", "crop": "boxes"},
            ],
        }
    )
    assert [s.name for s in select_voc_sources(cfg, None)] == ["voc-a"]
    assert [s.name for s in select_voc_sources(cfg, "voc-b")] == ["voc-b"]
    assert [s.name for s in select_voc_sources(cfg, "all")] == ["voc-a", "voc-b"]
    with pytest.raises(DetectionDataError, match=r"no VOC source 'photos'; valid: voc-a, voc-b, all"):
        select_voc_sources(cfg, "photos")
