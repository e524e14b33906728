"""Batch detection over folders: odd inputs, EXIF orientation, order, and the ``maskops detect`` command.

A ``BlobDetector`` (bright squares are "faces") makes box positions exact and needs no weights; one
integration test runs the real YuNet on a real, EXIF-rotated photo.
"""

from __future__ import annotations

import io
import json
import random
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from maskops.cli import app
from maskops.data.images import load_image
from maskops.detect.batch import BatchDetector, BatchSummary, ImageJob, collect_images
from maskops.detect.detectors import FaceDetector, register_detector
from maskops.detect.pipeline import FaceMaskPipeline, PipelineConfig
from maskops.inference.classifier import OnnxClassifier
from maskops.types import Detections

ORIENTATION = 0x0112


@register_detector("test-blob")
class BlobDetector(FaceDetector):
    """Bright (> 200) connected regions of at least 16 px² are faces; boxes are exact."""

    name = "test-blob"

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s

    def detect(self, image_bgr: np.ndarray) -> Detections:
        if self.delay_s:
            time.sleep(random.uniform(0, self.delay_s))  # shuffles completion order across threads
        gray = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY)
        n, _, stats, _ = cv2.connectedComponentsWithStats((gray > 200).astype(np.uint8))
        boxes = [
            [x, y, x + w, y + h]
            for x, y, w, h, area in stats[1:n].tolist()
            if area >= 16 and w < gray.shape[1]
        ]
        k = len(boxes)
        return Detections(
            xyxy=np.asarray(boxes, np.float32).reshape(-1, 4),
            confidence=np.full(k, 0.9, np.float32),
            class_id=np.full(k, -1),
            face_score=np.full(k, 0.9, np.float32),
        )


def textured(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Mid-grey noise (never > 200, so no blob) in BGR."""
    return np.random.default_rng(seed).integers(40, 160, size=(h, w, 3), dtype=np.uint8)


def with_square(img: np.ndarray, x: int, y: int, side: int) -> np.ndarray:
    img = img.copy()
    img[y : y + side, x : x + side] = 255
    return img


def write_png(path: Path, array: np.ndarray) -> Path:
    """PNG bytes at ``path`` whatever its suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, data = cv2.imencode(".png", array)
    assert ok
    path.write_bytes(data.tobytes())
    return path


def exif_rotated_jpeg(path: Path, stored_bgr: np.ndarray, orientation: int = 6) -> Path:
    """A JPEG whose pixels are stored as given, with an EXIF orientation tag (6 = rotate 90° CW)."""
    image = Image.fromarray(cv2.cvtColor(stored_bgr, cv2.COLOR_BGR2RGB))
    exif = image.getexif()
    exif[ORIENTATION] = orientation
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=95, exif=exif.tobytes())
    path.write_bytes(buf.getvalue())
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Every awkward input in one tree (plus a note that is not an image at all)."""
    root = tmp_path / "in"
    base = textured(120, 160)
    write_png(root / "a_face.png", with_square(base, 30, 40, 40))
    (root / "b_corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 50)  # JPEG header, no data
    write_png(root / "c_noface.png", base)
    huge = np.full((3000, 4000, 3), 90, np.uint8)
    assert cv2.imwrite(str(root / "d_huge.jpg"), with_square(huge, 3000, 2000, 400))
    write_png(root / "e_tiny.png", textured(6, 8))
    write_png(root / "f_gray.png", cv2.cvtColor(with_square(base, 10, 10, 30), cv2.COLOR_BGR2GRAY))
    rgba = np.dstack([with_square(base, 100, 60, 30), np.full((120, 160), 255, np.uint8)])
    write_png(root / "g_rgba.png", rgba)
    (root / "notes.txt").write_text("not an image\n")
    write_png(root / "sub" / "h_nested.bin", with_square(base, 5, 5, 20))  # image by content only
    return root


def batch(model: Path, workers: int = 2, out: Path | None = None, delay_s: float = 0.0) -> BatchDetector:
    pipe = FaceMaskPipeline(OnnxClassifier(model), BlobDetector(delay_s), PipelineConfig(uncertain=False))
    return BatchDetector(pipe, lambda: BlobDetector(delay_s), workers=workers, out_dir=out)


def test_collect_finds_images_by_content_recursively(folder: Path, tmp_path: Path) -> None:
    out = folder / "annotated"
    write_png(out / "old.png", textured(10, 10))  # a previous run's output inside the input tree
    jobs, missing = collect_images([folder, tmp_path / "nope"], exclude=out)
    names = [j.path.relative_to(folder).as_posix() for j in jobs]
    assert names == [
        "a_face.png", "b_corrupt.jpg", "c_noface.png", "d_huge.jpg", "e_tiny.png",
        "f_gray.png", "g_rgba.png", "sub/h_nested.bin",
    ]  # fmt: skip
    assert jobs[-1].output == Path("sub/h_nested.bin.jpg")
    assert [(str(m.path), m.error) for m in missing] == [(str(tmp_path / "nope"), "no such file or folder")]
    # the same relative name from two inputs gets two output names
    again, _ = collect_images([folder / "a_face.png", folder / "a_face.png"])
    assert [j.output for j in again] == [Path("a_face.png"), Path("a_face-1.png")]


def test_folder_with_awkward_files(folder: Path, tmp_path: Path, linear_model: Path) -> None:
    jobs, _ = collect_images([folder])
    out = tmp_path / "out"
    records = list(batch(linear_model, out=out).run(jobs))
    by_name = {r.path.name: r for r in records}
    assert [r.path for r in records] == [j.path for j in jobs]

    corrupt = by_name["b_corrupt.jpg"]
    assert not corrupt.ok and "truncated JPEG" in corrupt.error
    assert corrupt.to_json(["a", "b", "c"]) == {"path": str(corrupt.path), "error": corrupt.error}

    assert len(by_name["c_noface.png"].result.detections) == 0
    assert len(by_name["e_tiny.png"].result.detections) == 0 and by_name["e_tiny.png"].width == 8
    huge = by_name["d_huge.jpg"]
    assert (huge.width, huge.height) == (4000, 3000)
    np.testing.assert_allclose(huge.result.detections.xyxy, [[3000, 2000, 3400, 2400]], atol=2)
    assert by_name["f_gray.png"].mode == "L" and len(by_name["f_gray.png"].result.detections) == 1
    assert by_name["g_rgba.png"].mode == "RGBA"
    np.testing.assert_allclose(by_name["g_rgba.png"].result.detections.xyxy, [[100, 60, 130, 90]])
    np.testing.assert_allclose(by_name["h_nested.bin"].result.detections.xyxy, [[5, 5, 25, 25]])

    for r in records:
        if r.ok:
            assert r.annotated is not None and r.annotated.is_file()
            assert set(r.timings_ms) == {"decode", "detect", "classify", "write"}
            rec = json.loads(json.dumps(r.to_json(["with_mask", "without_mask", "mask_weared_incorrect"])))
            assert rec["num_faces"] == len(rec["faces"]) == len(r.result.detections)
    drawn = cv2.imread(str(out / "a_face.png"))
    assert drawn.shape == (120, 160, 3) and not np.array_equal(drawn, cv2.imread(str(folder / "a_face.png")))

    summary = BatchSummary()
    for r in records:
        summary.add(r)
    summary.elapsed_s = 2.0
    s = summary.as_dict(batch(linear_model, workers=1).pipeline)
    assert (s["images"], s["failed"], s["faces"]) == (7, 1, 5)
    assert s["images_per_s"] == 3.5 and set(s["median_ms"]) == {"decode", "detect", "classify", "write"}


def test_exif_orientation_is_applied_before_detection(tmp_path: Path, linear_model: Path) -> None:
    stored = with_square(textured(200, 300), 20, 30, 40)  # 300 wide, 200 high as stored
    path = exif_rotated_jpeg(tmp_path / "rotated.jpg", stored)
    upright = np.rot90(stored, k=-1)  # orientation 6: rotate 90° clockwise to display
    assert load_image(path).image.shape[:2] == (300, 200)

    (record,) = batch(linear_model, workers=1).run([ImageJob(path, Path("rotated.jpg"))])
    assert (record.width, record.height) == (200, 300)
    expected = BlobDetector().detect(np.ascontiguousarray(upright)).xyxy
    assert expected.tolist() == [[130.0, 20.0, 170.0, 60.0]]
    np.testing.assert_allclose(record.result.detections.xyxy, expected, atol=2)


def test_output_order_is_the_input_order(tmp_path: Path, linear_model: Path) -> None:
    paths = [
        write_png(tmp_path / f"img{i:02d}.png", with_square(textured(60, 80, i), i, i, 20)) for i in range(16)
    ]
    jobs = [ImageJob(p, Path(p.name)) for p in paths]
    records = list(batch(linear_model, workers=2, delay_s=0.004).run(jobs))
    assert [r.path for r in records] == paths
    assert [float(r.result.detections.xyxy[0, 0]) for r in records] == [float(i) for i in range(16)]


def test_workers_need_a_detector_factory(linear_model: Path) -> None:
    pipe = FaceMaskPipeline(OnnxClassifier(linear_model), BlobDetector())
    with pytest.raises(ValueError, match="detector_factory"):
        BatchDetector(pipe, None, workers=2)


# ---- the command


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("MASKOPS_NO_PROGRESS", "1")
    return CliRunner()


def test_detect_command_writes_images_jsonl_and_summary(
    runner: CliRunner, folder: Path, tmp_path: Path, linear_model: Path
) -> None:
    out = tmp_path / "out"
    args = ["detect", str(folder), "--out", str(out), "--model", str(linear_model), "--detector", "test-blob"]
    result = runner.invoke(app, [*args, "--json", "--workers", "2", "--no-uncertain"])
    assert result.exit_code == 1, result.output  # the corrupt file
    assert "skipped:" in result.stderr and "b_corrupt.jpg" in result.stderr and "truncated" in result.stderr
    lines = [json.loads(x) for x in result.stdout.splitlines()]
    assert [Path(x["path"]).name for x in lines][:3] == ["a_face.png", "b_corrupt.jpg", "c_noface.png"]
    written = [json.loads(x) for x in (out / "detections.jsonl").read_text().splitlines()]
    assert written == lines
    assert lines[0]["faces"][0]["label"] in {"with_mask", "without_mask", "mask_weared_incorrect"}
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["images"], summary["failed"], summary["faces"]) == (7, 1, 5)
    assert summary["per_class"]["uncertain"] == 0
    assert "compliance" in result.stderr and "images/s" in result.stderr  # table on stderr with --json
    assert (out / "d_huge.jpg").is_file() and (out / "sub" / "h_nested.bin.jpg").is_file()

    # a second run over clean inputs exits 0 and does not append to the previous JSONL
    clean = runner.invoke(app, ["detect", str(folder / "a_face.png"), *args[2:]])
    assert clean.exit_code == 0, clean.output
    assert len((out / "detections.jsonl").read_text().splitlines()) == 1
    assert "faces" in clean.stdout and "compliance" in clean.stdout


def test_detect_command_missing_model_and_bad_inputs(
    runner: CliRunner, tmp_path: Path, linear_model: Path
) -> None:
    missing = tmp_path / "models" / "facemask.onnx"
    result = runner.invoke(app, ["detect", str(tmp_path), "--model", str(missing)])
    assert result.exit_code == 2
    assert str(missing) in result.stderr and "maskops train --task facemask --ship" in result.stderr

    empty = tmp_path / "empty"
    empty.mkdir()
    result = runner.invoke(
        app, ["detect", str(empty), "--model", str(linear_model), "--detector", "test-blob"]
    )
    assert result.exit_code == 2 and "no image files found" in result.stderr

    result = runner.invoke(app, ["detect", str(empty), "--model", str(linear_model), "--detector", "nope"])
    assert result.exit_code == 2 and "unknown face detector 'nope'" in result.stderr


def test_default_model_path_comes_from_settings(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MASKOPS_MODELS_DIR", str(tmp_path / "shipped"))
    result = runner.invoke(app, ["detect", str(tmp_path)])
    assert result.exit_code == 2 and str(tmp_path / "shipped" / "facemask.onnx") in result.stderr


@pytest.mark.integration
def test_yunet_boxes_follow_exif_rotation(tmp_path: Path, data_dir: Path, linear_model: Path) -> None:
    from maskops.config import Settings
    from maskops.data.images import read_bgr

    photo = data_dir / "facemask-photos" / "without_mask" / "0_0_aidai_0014.jpg"
    if Settings().yunet_path is None or not photo.is_file():
        pytest.skip(f"needs the YuNet weights (MASKOPS_YUNET_PATH) and {photo}")
    upright = cv2.copyMakeBorder(read_bgr(photo), 60, 60, 60, 60, cv2.BORDER_CONSTANT, value=(128, 128, 128))
    stored = np.ascontiguousarray(np.rot90(upright, k=1))  # what a camera held sideways stores
    path = exif_rotated_jpeg(tmp_path / "sideways.jpg", stored)
    pipe = FaceMaskPipeline.from_paths(linear_model)
    (record,) = BatchDetector(pipe).run([ImageJob(path, Path("sideways.jpg"))])
    reference = pipe(upright).detections
    assert (record.width, record.height) == (upright.shape[1], upright.shape[0])
    assert len(reference) == 1 and len(record.result.detections) == 1
    np.testing.assert_allclose(record.result.detections.xyxy, reference.xyxy, atol=4)
