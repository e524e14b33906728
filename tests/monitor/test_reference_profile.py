"""The reference profile of a model from its task's val and test images (``maskops.monitor.profile``)
and ``maskops monitor reference``: a tiny VOC task, a fake detector returning the true boxes, and a
small exported classifier with the embedding output."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from maskops.config import Settings, load_task
from maskops.detect.detectors import FaceDetector, register_detector
from maskops.detect.pipeline import FaceMaskPipeline, PipelineConfig
from maskops.export.embedding import fit_embedding, record_projection
from maskops.export.onnx import export_onnx
from maskops.inference.classifier import OnnxClassifier
from maskops.monitor.profile import (
    build_model_reference,
    match_faces,
    reference_images,
    reference_path,
)
from maskops.monitor.reference import ReferenceProfile, compare_to_reference
from maskops.monitor.window import CLASS_MIX, FACE_FEATURES, IMAGE_FEATURES
from maskops.types import Detections, ModelSpec

NAMES = ["with_mask", "without_mask", "mask_weared_incorrect"]
# stem: (width, height, [(class, x1, y1, x2, y2), ...])
IMAGES = {
    "a": (96, 64, [("with_mask", 4, 4, 40, 44), ("without_mask", 50, 6, 90, 50)]),
    "b": (112, 64, [("mask_weared_incorrect", 20, 10, 60, 54)]),
    "c": (72, 72, []),
}
SPLITS = {"train": [], "val": ["a", "c"], "test": ["a", "b", "c"]}
TASK = """
name: tinyref
kind: detection
classes: [with_mask, without_mask, mask_weared_incorrect]
sources:
  - name: tiny-voc
    kind: voc
    path: tiny-voc
    splits_file: splits.json
    crop: boxes
"""


@register_detector("test_reference_faces")
class TrueFaces(FaceDetector):
    """The true boxes of the tiny set (found by image width), plus nothing else."""

    name = "test_reference_faces"

    def __init__(self, score_threshold: float = 0.5) -> None:
        self.score_threshold = score_threshold

    def detect(self, image_bgr: np.ndarray) -> Detections:
        boxes = [o[1:] for w, _h, objs in IMAGES.values() if w == image_bgr.shape[1] for o in objs]
        n = len(boxes)
        return Detections(
            xyxy=np.asarray(boxes, np.float32).reshape(-1, 4),
            confidence=np.full(n, 0.9, np.float32),
            class_id=np.full(n, -1),
            face_score=np.linspace(0.7, 0.95, n).astype(np.float32),
        )


def _xml(stem: str, width: int, height: int, objects: list) -> str:
    objs = "".join(
        f"<object><name>{n}</name><difficult>0</difficult><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin>"
        f"<xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
        for n, x1, y1, x2, y2 in objects
    )
    return (
        f"<annotation><filename>{stem}.png</filename><size><width>{width}</width><height>{height}</height>"
        f"<depth>3</depth></size>{objs}</annotation>"
    )


class PoolNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 32, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(torch.relu(self.conv(x))).flatten(1))


def _noise(h: int, w: int, seed: int) -> np.ndarray:
    # textured mid-grey: sharp and bright enough that the pipeline judges the faces
    return np.random.default_rng(seed).integers(60, 200, size=(h, w, 3), dtype=np.uint8)


def _model(path: Path, names: list[str], *, embedding: bool = True) -> Path:
    torch.manual_seed(0)
    spec = ModelSpec(
        task="tinyref", class_names=names, input_size=(24, 24), thresholds={"min_confidence": 0.2}
    )
    out = export_onnx(PoolNet().eval(), spec, path, features=embedding)
    if embedding:
        record_projection(fit_embedding(out, [_noise(30, 30, s) for s in range(40)], fitted_on="val"), out)
    return out


@pytest.fixture
def task_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "data" / "tiny-voc"
    (root / "images").mkdir(parents=True)
    (root / "annotations").mkdir()
    for k, (stem, (w, h, objs)) in enumerate(IMAGES.items()):
        cv2.imwrite(str(root / "images" / f"{stem}.png"), _noise(h, w, k))
        (root / "annotations" / f"{stem}.xml").write_text(_xml(stem, w, h, objs), encoding="utf-8")
    (root / "splits.json").write_text(json.dumps(SPLITS))
    configs = tmp_path / "configs" / "tasks"
    configs.mkdir(parents=True)
    (configs / "tinyref.yaml").write_text(TASK)
    monkeypatch.setenv("MASKOPS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MASKOPS_CONFIG_DIR", str(tmp_path / "configs"))
    monkeypatch.setenv("MASKOPS_NO_PROGRESS", "1")
    return tmp_path


@pytest.fixture
def model(task_env: Path) -> Path:
    return _model(task_env / "models" / "tinyref.onnx", NAMES)


def test_reference_images_of_a_detection_task(task_env: Path) -> None:
    images = reference_images(load_task("tinyref"), Settings())
    assert [(i.path.stem, i.split) for i in images] == [
        ("a", "val"),
        ("c", "val"),
        ("a", "test"),
        ("b", "test"),
        ("c", "test"),
    ]
    assert [len(i.faces) for i in images if i.faces is not None] == [2, 0, 2, 1, 0]
    assert all(i.source == "tiny-voc" for i in images)
    assert len(reference_images(load_task("tinyref"), Settings(), limit=1)) == 2


def test_match_faces_is_one_to_one_by_iou() -> None:
    truth = Detections.from_lists([[0, 0, 10, 10], [20, 0, 30, 10]], [0, 1])
    found = Detections.from_lists([[1, 0, 11, 10], [0, 0, 10, 10], [40, 40, 50, 50]], [0, 0, 0])
    assert match_faces(found, truth) == [
        (1, 0)
    ]  # the exact box wins the first truth; none reaches the second
    assert match_faces(Detections.empty(), truth) == []


def test_detection_profile_has_the_store_features_embedding_and_accuracy(task_env: Path, model: Path) -> None:
    task = load_task("tinyref")
    profile = build_model_reference(task, model, detector="test_reference_faces")
    # the names load_window gives a store window
    assert set(FACE_FEATURES) | set(IMAGE_FEATURES) <= set(profile.numeric)
    assert profile.numeric["face_count"].n == 5 and profile.numeric["brightness"].n == 5
    assert profile.numeric["face_count"].quantiles[-1] == 2.0
    assert profile.numeric["face_size"].n == 5
    assert sum(profile.categorical[CLASS_MIX].values()) == 5
    assert profile.n_embedding == 5 and profile.embedding is not None
    assert np.asarray(profile.embedding).shape == (5, 24)
    info = profile.info
    assert info["images"] == 5 and info["faces"] == 5 and info["matched_faces"] == 5
    assert info["detector"] == "test_reference_faces" and info["embedding_dims"] == 24
    assert "matched" in info["accuracy_on"]
    # the same answers from the served pipeline, scored by hand
    pipe = FaceMaskPipeline(OnnxClassifier(model), TrueFaces(), PipelineConfig())
    correct = scored = 0
    for stem in ("a", "c", "a", "b", "c"):
        objs = IMAGES[stem][2]
        image = cv2.imread(str(task_env / "data" / "tiny-voc" / "images" / f"{stem}.png"))
        result = pipe(image)
        for cid, obj in zip(result.detections.class_id.tolist(), objs, strict=True):
            if cid >= 0:
                scored += 1
                correct += int(NAMES[cid] == obj[0])
    assert info["scored_faces"] == scored
    assert profile.accuracy == (pytest.approx(correct / scored) if scored else None)


def test_a_profile_compared_with_its_own_data_does_not_drift(
    task_env: Path, model: Path, tmp_path: Path
) -> None:
    profile = build_model_reference(load_task("tinyref"), model, detector="test_reference_faces")
    profile.save(tmp_path / "p.json")
    loaded = ReferenceProfile.load(tmp_path / "p.json")
    assert loaded == profile
    numeric = {k: np.asarray(v.quantiles) for k, v in loaded.numeric.items()}
    drift = compare_to_reference(loaded, numeric=numeric)
    assert drift and not any(d.result.drifted for d in drift)


def test_a_model_without_the_embedding_output_gives_a_profile_without_embedding(task_env: Path) -> None:
    old = _model(task_env / "old.onnx", NAMES, embedding=False)
    profile = build_model_reference(load_task("tinyref"), old, detector="test_reference_faces")
    assert profile.embedding is None and profile.n_embedding == 0
    assert profile.info["embedding_dims"] is None


def test_a_profile_without_info_still_loads() -> None:
    data = ReferenceProfile(accuracy=0.5).to_dict()
    del data["info"]
    assert ReferenceProfile.from_dict(data).info == {}


def test_classification_task_profile_uses_whole_images(tmp_path: Path) -> None:
    from maskops.config import TaskConfig

    classes = ["red", "green", "blue"]
    rows = []
    (tmp_path / "img").mkdir()
    for k, (split, label) in enumerate(
        [("val", "red"), ("val", "green"), ("test", "blue"), ("train", "red")]
    ):
        path = tmp_path / "img" / f"{k}.png"
        cv2.imwrite(str(path), _noise(20, 20, k))
        rows.append(
            {
                "path": str(path),
                "sha256": str(k),
                "label": label,
                "split": split,
                "group": str(k),
                "source": "toy",
                "parent": "",
                "box": "",
            }
        )
    manifest = tmp_path / "manifest.csv"
    with manifest.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    task = TaskConfig(name="toy", kind="classification", classes=classes, sources=[])
    profile = build_model_reference(task, _model(tmp_path / "toy.onnx", classes), manifest=manifest)
    assert profile.info["images"] == 3 and profile.info["faces"] == 3
    assert "face_count" not in profile.numeric and "face_size" not in profile.numeric
    assert {"brightness", "confidence", "p_red"} <= set(profile.numeric)
    assert profile.accuracy is not None and profile.info["accuracy_on"] == "whole images (argmax class)"
    assert profile.n_embedding == 3


def test_cli_writes_the_profile_beside_the_model(task_env: Path, model: Path) -> None:
    from maskops.cli import app

    args = [
        "monitor",
        "reference",
        "--task",
        "tinyref",
        "--model",
        str(model),
        "--detector",
        "test_reference_faces",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    path = reference_path(model)
    assert path.name == "tinyref.reference.json" and path.is_file()
    assert "5 images, 5 faces" in result.output and "measured accuracy" in result.output
    assert ReferenceProfile.load(path).info["model"] == "tinyref.onnx"
    out = task_env / "elsewhere" / "ref.json"
    result = CliRunner().invoke(app, [*args, "--out", str(out), "--limit", "1"])
    assert result.exit_code == 0, result.output
    assert ReferenceProfile.load(out).info["images"] == 2


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("wrong_classes", "are not task 'tinyref'"),
        ("no_model", "model file not found"),
        ("unknown_task", "unknown task"),
    ],
)
def test_cli_errors_exit_2(task_env: Path, setup: str, message: str) -> None:
    from maskops.cli import app

    task, model = "tinyref", task_env / "models" / "tinyref.onnx"
    if setup == "wrong_classes":
        model = _model(task_env / "other.onnx", ["a", "b", "c"])
    elif setup == "unknown_task":
        task = "nosuchtask"
    result = CliRunner().invoke(
        app,
        ["monitor", "reference", "--task", task, "--model", str(model), "--detector", "test_reference_faces"],
    )
    assert result.exit_code == 2
    assert message in result.output
