"""``maskops evaluate --detection`` end to end: a tiny VOC task, a fixed fake detector, a linear classifier."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_detection_run import IMAGES, _xml  # same folder (pytest puts it on sys.path)
from typer.testing import CliRunner

from maskops.detect.detectors import FaceDetector, register_detector
from maskops.types import Detections

TASK = """
name: tinymask
kind: detection
classes: [with_mask, without_mask, mask_weared_incorrect]
sources:
  - name: tiny-voc
    kind: voc
    path: tiny-voc
    splits_file: splits.json
    crop: boxes
"""


@register_detector("test_true_faces")
class TrueFaces(FaceDetector):
    """Returns the ground-truth boxes of the tiny set (by image width), so only the classifier matters."""

    name = "test_true_faces"

    def __init__(self, score_threshold: float = 0.5) -> None:
        self.score_threshold = score_threshold

    def detect(self, image_bgr: np.ndarray) -> Detections:
        boxes = [o[1:] for w, _h, objs in IMAGES.values() if w == image_bgr.shape[1] for o in objs]
        n = len(boxes)
        return Detections(
            xyxy=np.asarray(boxes, np.float32).reshape(-1, 4),
            confidence=np.full(n, 0.9, np.float32),
            class_id=np.full(n, -1),
            face_score=np.full(n, 0.9, np.float32),
        )


@pytest.fixture
def task_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    import cv2

    data = tmp_path / "data"
    root = data / "tiny-voc"
    (root / "images").mkdir(parents=True)
    (root / "annotations").mkdir()
    for stem, (w, h, objs) in IMAGES.items():
        cv2.imwrite(str(root / "images" / f"{stem}.png"), np.full((h, w, 3), 128, np.uint8))
        (root / "annotations" / f"{stem}.xml").write_text(_xml(stem, w, h, objs), encoding="utf-8")
    (root / "splits.json").write_text(json.dumps({"train": [], "val": ["c"], "test": ["a", "b", "c"]}))
    configs = tmp_path / "configs"
    (configs / "tasks").mkdir(parents=True)
    (configs / "tasks" / "tinymask.yaml").write_text(TASK)
    monkeypatch.setenv("MASKOPS_DATA_DIR", str(data))
    monkeypatch.setenv("MASKOPS_CONFIG_DIR", str(configs))
    monkeypatch.setenv("MASKOPS_NO_PROGRESS", "1")
    return tmp_path


def test_cli_detection_with_classifier(task_env: Path, linear_model: Path) -> None:
    from maskops.cli import app

    out = task_env / "report"
    args = ["evaluate", "--task", "tinymask", "--detection", "--detector", "test_true_faces"]
    result = CliRunner().invoke(app, [*args, "--model", str(linear_model), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "mAP@0.5" in result.output and "face recall" in result.output
    data = json.loads((out / "report.json").read_text())
    assert data["info"]["detector"] == "test_true_faces"
    assert data["face_recall"]["all"]["recall"] == 1.0
    # a grey image gives the same class to every face, so at most one class is right per face
    assert 0.0 <= data["map50"] <= 1.0
    assert (out / "report.md").is_file() and (out / "pr.png").is_file()

    gate = CliRunner().invoke(
        app, [*args, "--model", str(linear_model), "--out", str(out), "--min-map", "1.01"]
    )
    assert gate.exit_code == 1


def test_cli_detection_oracle_is_perfect_on_true_boxes(task_env: Path) -> None:
    from maskops.cli import app

    out = task_env / "oracle"
    args = [
        "evaluate",
        "--task",
        "tinymask",
        "--detection",
        "--detector",
        "test_true_faces",
        "--oracle-labels",
    ]
    result = CliRunner().invoke(app, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    data = json.loads((out / "report.json").read_text())
    assert data["map50"] == pytest.approx(1.0)
    assert data["map50_95"] == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--split", "holdout", "--oracle-labels"], "no split 'holdout'"),
        (["--detector", "nope", "--oracle-labels"], "unknown face detector 'nope'"),
        (["--model", "missing.onnx"], "missing.onnx"),
    ],
)
def test_cli_detection_errors(task_env: Path, extra: list[str], message: str) -> None:
    from maskops.cli import app

    args = ["evaluate", "--task", "tinymask", "--detection", "--detector", "test_true_faces"]
    result = CliRunner().invoke(app, [*args, *extra])
    assert result.exit_code == 2
    assert message in result.output


def test_cli_detection_face_threshold_and_its_deprecated_name(
    task_env: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from maskops.cli import app

    base = [
        "evaluate",
        "--task",
        "tinymask",
        "--detection",
        "--detector",
        "test_true_faces",
        "--oracle-labels",
    ]
    out = task_env / "ft"
    result = CliRunner().invoke(app, [*base, "--face-threshold", "0.3", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "report.json").read_text())["info"]["face_score_threshold"] == 0.3
    with caplog.at_level("WARNING"):
        result = CliRunner().invoke(app, [*base, "--face-score", "0.2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "report.json").read_text())["info"]["face_score_threshold"] == 0.2
    assert "--face-score is deprecated" in caplog.text


def test_cli_detection_dataset_unknown_lists_the_sources(task_env: Path) -> None:
    from maskops.cli import app

    args = ["evaluate", "--task", "tinymask", "--detection", "--oracle-labels", "--dataset", "other"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert "no VOC source 'other'; valid: tiny-voc, all" in result.output
