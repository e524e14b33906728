from __future__ import annotations

import json
import shutil
from collections import Counter, defaultdict
from pathlib import Path

import cv2
import numpy as np
import pytest
from datagen import pattern_image, voc_xml, write_image

from maskops.config import CropConfig, Settings, SourceConfig, SplitConfig, SynthConfig, TaskConfig
from maskops.data.crops import pixel_sha256
from maskops.data.images import load_image
from maskops.data.manifest import read_manifest
from maskops.data.prepare import prepare_task
from maskops.detect.base import FaceDetector
from maskops.detect.registry import create_detector, register_detector
from maskops.types import Detections

CLASSES = ["with_mask", "without_mask", "mask_weared_incorrect"]


@register_detector("fake_count")
class FakeCountDetector(FaceDetector):
    """Finds as many faces as the top-left blue value says (0, 100, 200 -> 0, 1, 2)."""

    def __init__(self, **_: object) -> None:
        pass

    def detect(self, image_bgr: np.ndarray) -> Detections:
        n = int(image_bgr[0, 0, 0]) // 100
        boxes = [[20 + 10 * k, 20, 60 + 10 * k, 70] for k in range(n)]
        return Detections.from_lists(boxes, [-1] * n, [0.9] * n)


def _photo(path: Path, seed: int, faces: int, size: tuple[int, int] = (96, 128)) -> Path:
    img = pattern_image(seed, size)
    img[0, 0, 0] = 100 * faces
    return write_image(path, img)


def _build(tmp_path: Path) -> tuple[TaskConfig, Settings]:
    data = tmp_path / "data"
    voc = data / "voc"
    splits: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for k in range(9):
        stem = f"img{k}"
        write_image(voc / "images" / f"{stem}.jpg", pattern_image(100 + k, (100, 120)), ".jpg")
        objs = [
            ("with_mask", 10, 10, 40, 50),
            ("without_mask", 60, 20, 90, 60),
            ("mask_weared_incorrect", 5, 60, 30, 90),
        ]
        if k == 0:
            objs.append(("with_mask", 100, 10, 104, 14))  # 4 px: below min_size
        (voc / "annotations").mkdir(parents=True, exist_ok=True)
        (voc / "annotations" / f"{stem}.xml").write_text(voc_xml(f"{stem}.jpg", 120, 100, objs))
        splits["train" if k < 5 else "val" if k < 7 else "test"].append(stem)
    (voc / "splits.json").write_text(json.dumps(splits))
    photos = data / "photos"
    for k in range(12):
        _photo(photos / "with_mask" / f"w{k}.png", 200 + k, faces=1)
        _photo(photos / "without_mask" / f"n{k}.jpg_1088Wx1632H", 300 + k, faces=1)
    _photo(photos / "with_mask" / "zero.png", 400, faces=0)
    _photo(photos / "with_mask" / "two.png", 401, faces=2)
    shutil.copy(photos / "with_mask" / "w0.png", photos / "with_mask" / "w0 copy.png")
    near = cv2.resize(
        load_image(photos / "with_mask" / "w1.png").image, (64, 48), interpolation=cv2.INTER_AREA
    )
    near[0, 0, 0] = 100
    write_image(photos / "with_mask" / "w1 small.png", near)
    data_bytes = (photos / "without_mask" / "n0.jpg_1088Wx1632H").read_bytes()
    (photos / "without_mask" / "cut.png").write_bytes(data_bytes[: len(data_bytes) // 2])
    task = TaskConfig(
        name="t",
        kind="detection",
        classes=CLASSES,
        sources=[
            SourceConfig(name="voc", kind="voc", path="voc", splits_file="splits.json", crop="boxes"),
            SourceConfig(
                name="photos", kind="folder", path="photos", crop="face", splits_for=["train", "val"]
            ),
        ],
        split=SplitConfig(seed=5),
        crops=CropConfig(margin=0.1, min_size=8),
    )
    return task, Settings(data_dir=data, work_dir=tmp_path / "work")


def _run(task: TaskConfig, settings: Settings, make_detector: object = create_detector):  # type: ignore[no-untyped-def]
    return prepare_task(
        task, settings, workers=1, detector="fake_count", detector_options={}, make_detector=make_detector
    )


def test_prepare_end_to_end(tmp_path: Path) -> None:
    task, settings = _build(tmp_path)
    report = _run(task, settings)
    rows = read_manifest(report.manifest_path)
    assert report.n_rows == len(rows)
    assert {r.label for r in rows} <= set(CLASSES)
    kinds = report.excluded_reasons()
    assert kinds == {"small_box": 1, "exact_duplicate": 1, "unreadable": 1, "multiple_faces": 1}
    # every group in exactly one split; photos only in train/val; VOC follows splits.json
    split_of_group: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        split_of_group[r.group].add(r.split)
    assert all(len(s) == 1 for s in split_of_group.values())
    assert {r.split for r in rows if r.source.startswith("photos")} <= {"train", "val"}
    voc_splits = {Path(r.parent).stem: r.split for r in rows if r.source == "voc"}
    assert voc_splits["img0"] == "train" and voc_splits["img5"] == "val" and voc_splits["img8"] == "test"
    # the resized copy sits in its original's group
    parents = {Path(r.parent).name: r for r in rows if r.source.startswith("photos")}
    assert parents["w1 small.png"].group == parents["w1.png"].group
    assert ("w0 copy.png" in parents) != ("w0.png" in parents)  # byte-identical copies kept once
    assert "two.png" not in parents
    assert parents["zero.png"].source == "photos:whole" and parents["zero.png"].box == ""
    # crops: the face box plus the margin, saved as PNG
    face = parents["w2.png"]
    assert face.box == "20,20,60,70"
    assert load_image(face.path).image.shape[:2] == (60, 48)
    assert report.summary["crops"]["photos_by_faces_found"] == {"0": 1, "1": 25, ">1": 1}
    voc_box = next(r for r in rows if r.source == "voc" and r.box == "10,10,40,50")
    assert load_image(voc_box.path).image.shape[:2] == (48, 36)
    assert report.counts["test"] == {"with_mask": 2, "without_mask": 2, "mask_weared_incorrect": 2}
    meta = json.loads((report.manifest_path.parent / "manifest.json").read_text())
    assert meta["manifest_hash"] == report.manifest_hash
    assert meta["config"]["name"] == "t" and meta["excluded_counts"]["small_box"] == 1


def test_prepare_is_deterministic_and_resumes(tmp_path: Path) -> None:
    task, settings = _build(tmp_path)
    first = _run(task, settings)
    assert first.summary["crops"]["crop_images_cut"] > 0
    again = _run(task, settings)
    assert again.summary["crops"]["crop_images_cut"] == 0
    assert again.manifest_hash == first.manifest_hash
    # an interrupted run: one crop missing, a half-written log line
    rows = read_manifest(first.manifest_path)
    Path(rows[0].path).unlink()
    with (first.manifest_path.parent / "crops.jsonl").open("a") as fh:
        fh.write('{"key": "cut sho')
    resumed = _run(task, settings)
    assert resumed.summary["crops"]["crop_images_cut"] == 1
    assert resumed.manifest_hash == first.manifest_hash


def test_manifest_hash_ignores_the_png_encoding_of_crops(tmp_path: Path) -> None:
    task, settings = _build(tmp_path)
    first = _run(task, settings)
    rows = read_manifest(first.manifest_path)
    crops = [r for r in rows if r.box]
    assert crops
    # re-encode every crop differently (another libpng would do the same): new bytes, same pixels
    for r in crops:
        image = cv2.imread(r.path, cv2.IMREAD_UNCHANGED)
        before = Path(r.path).read_bytes()
        ok, buf = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 0])
        assert ok and buf.tobytes() != before
        Path(r.path).write_bytes(buf.tobytes())
        assert pixel_sha256(image) == r.sha256
    again = _run(task, settings)
    assert again.summary["crops"]["crop_images_cut"] == 0
    assert again.manifest_hash == first.manifest_hash
    # a crop whose pixels changed is cut again
    image = cv2.imread(crops[0].path, cv2.IMREAD_UNCHANGED)
    image[0, 0] = 255 - image[0, 0]
    cv2.imwrite(crops[0].path, image)
    assert _run(task, settings).summary["crops"]["crop_images_cut"] == 1


def test_test_copy_wins_over_train_copy(tmp_path: Path) -> None:
    task, settings = _build(tmp_path)
    voc = settings.data_dir / "voc"
    shutil.copy(voc / "images" / "img8.jpg", voc / "images" / "img9.jpg")
    shutil.copy(voc / "annotations" / "img8.xml", voc / "annotations" / "img9.xml")
    splits = json.loads((voc / "splits.json").read_text())
    splits["train"].append("img9")
    (voc / "splits.json").write_text(json.dumps(splits))
    rows = read_manifest(_run(task, settings).manifest_path)
    assert {r.split for r in rows if Path(r.parent).stem in ("img8", "img9")} == {"test"}


def test_label_conflict_leaves_out_every_copy(tmp_path: Path) -> None:
    task, settings = _build(tmp_path)
    photos = settings.data_dir / "photos"
    shutil.copy(photos / "with_mask" / "w3.png", photos / "without_mask" / "w3.png")
    report = _run(task, settings)
    conflicts = [e for e in report.excluded if e["kind"] == "label_conflict"]
    assert len(conflicts) == 2


def test_grouped_classification_source(tmp_path: Path) -> None:
    data = tmp_path / "data" / "cells"
    for slide in range(12):
        for k in range(4):
            label = "Parasitized" if (slide + k) % 3 else "Uninfected"
            sub = "train" if k < 3 else "valid"
            name = f"C{slide + 30}P{slide}ThinF_IMG_2015_cell_{k}.png"
            write_image(data / sub / label / name, pattern_image(1000 + 10 * slide + k, (50, 50)))
    write_image(data / "train" / "Uninfected" / "odd_name_cell_1.png", pattern_image(5))
    task = TaskConfig(
        name="cells",
        kind="classification",
        classes=["Parasitized", "Uninfected"],
        sources=[
            SourceConfig(name="cells", kind="folder", path="cells", group_pattern=r"C(\d+)(?:P\d+)?_?thinF")
        ],
        split=SplitConfig(fractions={"train": 0.6, "val": 0.2, "test": 0.2}),
    )
    settings = Settings(data_dir=tmp_path / "data", work_dir=tmp_path / "work")
    report = prepare_task(task, settings, workers=1)
    rows = read_manifest(report.manifest_path)
    assert len(rows) == 48
    assert report.excluded_reasons() == {"no_group_id": 1}
    slides: dict[str, set[str]] = defaultdict(set)
    for r in rows:
        assert r.box == "" and r.parent == "" and Path(r.path).is_relative_to(data)
        slides[r.group].add(r.split)
    assert len(slides) == 12 and all(len(s) == 1 for s in slides.values())
    assert all(
        report.counts[s]["Parasitized"] > 0 and report.counts[s]["Uninfected"] > 0 for s in report.counts
    )


def test_missing_source_is_a_clear_error(tmp_path: Path) -> None:
    task, _ = _build(tmp_path)
    settings = Settings(data_dir=tmp_path / "nowhere", work_dir=tmp_path / "w")
    with pytest.raises(ValueError, match="source 'voc' not found"):
        prepare_task(task, settings, workers=1, make_detector=create_detector)


def test_face_sources_without_a_detector_factory_are_a_clear_error(tmp_path: Path) -> None:
    task, settings = _build(tmp_path)
    with pytest.raises(ValueError, match="crop: face sources or synthetic masks: pass make_detector"):
        prepare_task(task, settings, workers=1)


def test_synthetic_masks_join_the_manifest_as_train_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import maskops.data.synth as synth

    def landmarks(crop: np.ndarray, detector: object, work_px: int = 160) -> np.ndarray:
        h, w = crop.shape[:2]  # an upright face filling the crop
        rel = [[0.3, 0.35], [0.7, 0.35], [0.5, 0.55], [0.35, 0.72], [0.65, 0.72]]
        return np.array(rel, np.float32) * [w, h]

    monkeypatch.setattr(synth, "crop_landmarks", landmarks)
    made_with: list[str] = []

    def make_detector(name: str, **options: object) -> FaceDetector:
        made_with.append(name)
        return FakeCountDetector()

    task, settings = _build(tmp_path)
    plain = _run(task, settings, make_detector)
    plain_rows = read_manifest(plain.manifest_path)
    task = task.model_copy(
        update={"synthetic": SynthConfig(placements={"under_nose": 5, "correct": 3}, min_face_px=20)}
    )
    report = _run(task, settings, make_detector)
    assert made_with[-1] == "yunet"  # landmarks come from YuNet, whatever cut the crops
    rows = read_manifest(report.manifest_path)
    made = [r for r in rows if r.source.startswith("synth_")]
    assert len(rows) == len(plain_rows) + 8 and report.manifest_hash != plain.manifest_hash
    assert Counter(r.label for r in made) == {"mask_weared_incorrect": 5, "with_mask": 3}
    assert {r.split for r in made} == {"train"}
    train_groups = {r.group for r in plain_rows if r.split == "train" and r.label == "without_mask"}
    assert {r.group for r in made} <= train_groups
    assert report.summary["synthetic"]["made"] == {"under_nose": 5, "correct": 3}
    assert _run(task, settings, make_detector).manifest_hash == report.manifest_hash  # same files, same hash
