"""Synthetic masks: face axes, placement geometry, painting, and the manifest rows they make."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from maskops.config import SynthConfig, TaskConfig
from maskops.data.crops import pixel_sha256
from maskops.data.manifest import ManifestRow
from maskops.data.synth import draw_mask, face_frame, mask_polygon, synthesize_rows

# an upright face in a 100x120 image: eyes at y=40, nose tip at y=62, mouth at y=80
UPRIGHT = np.array([[35, 40], [65, 40], [50, 62], [38, 80], [62, 80]], np.float32)


def _depths(poly: np.ndarray) -> np.ndarray:
    return poly[:, 1] - 40.0  # distance below the eye line for the upright face


def test_face_frame_of_an_upright_face() -> None:
    f = face_frame(UPRIGHT)
    np.testing.assert_allclose(f.across, [1.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(f.down, [0.0, 1.0], atol=1e-6)
    assert f.eye_dist == pytest.approx(30.0)
    assert (f.nose, f.mouth) == (pytest.approx(22.0), pytest.approx(40.0))


def test_face_frame_follows_a_tilted_head() -> None:
    centre = UPRIGHT.mean(0)
    a = np.deg2rad(30.0)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    f = face_frame((UPRIGHT - centre) @ rot.T + centre)
    np.testing.assert_allclose(f.across, rot @ [1.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(f.down, rot @ [0.0, 1.0], atol=1e-6)
    assert f.nose == pytest.approx(22.0)


@pytest.mark.parametrize(
    ("landmarks", "message"),
    [
        (np.zeros((4, 2)), "(5, 2)"),
        (np.array([[50, 40], [50.5, 40], [50, 62], [38, 80], [62, 80]]), "apart"),
        (np.array([[35, 40], [65, 40], [50, 85], [38, 80], [62, 80]]), "nose"),
    ],
)
def test_face_frame_rejects_unusable_landmarks(landmarks: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        face_frame(landmarks)


@pytest.mark.parametrize("seed", range(5))
def test_placements_put_the_top_edge_where_they_say(seed: int) -> None:
    f = face_frame(UPRIGHT)
    rng = np.random.default_rng(seed)
    correct = _depths(mask_polygon(f, "correct", rng))[:9].max()  # the top edge's lowest point
    under = _depths(mask_polygon(f, "under_nose", rng))[:9]
    chin = _depths(mask_polygon(f, "chin", rng))[:9]
    assert correct < f.nose  # the nose is covered
    assert f.nose < under.min() and under.max() < f.mouth  # nose free, mouth covered
    assert chin.min() > f.mouth  # only the chin covered


def test_placement_must_be_known() -> None:
    with pytest.raises(ValueError, match="unknown placement"):
        mask_polygon(face_frame(UPRIGHT), "forehead", np.random.default_rng(0))  # type: ignore[arg-type]


def _skin() -> np.ndarray:
    img = np.full((120, 100, 3), (120, 150, 200), np.uint8)
    return img


def test_draw_mask_covers_the_mouth_and_leaves_the_nose_for_under_nose() -> None:
    img = _skin()
    nose, mouth, chin = (50, 60), (50, 82), (50, 100)  # (x, y)
    under = draw_mask(img, UPRIGHT, "under_nose", np.random.default_rng(1))
    assert np.abs(under[nose[1], nose[0]].astype(int) - img[nose[1], nose[0]]).max() <= 1
    assert np.abs(under[mouth[1], mouth[0]].astype(int) - img[mouth[1], mouth[0]]).max() > 10
    correct = draw_mask(img, UPRIGHT, "correct", np.random.default_rng(1))
    assert np.abs(correct[nose[1], nose[0]].astype(int) - img[nose[1], nose[0]]).max() > 10
    chin_only = draw_mask(img, UPRIGHT, "chin", np.random.default_rng(1))
    assert np.abs(chin_only[mouth[1] - 2, mouth[0]].astype(int) - img[mouth[1] - 2, mouth[0]]).max() <= 1
    assert np.abs(chin_only[chin[1], chin[0]].astype(int) - img[chin[1], chin[0]]).max() > 10
    assert under.shape == img.shape and under.dtype == np.uint8
    assert np.array_equal(img, _skin())  # the input is left alone


def test_draw_mask_is_deterministic_per_generator() -> None:
    a = draw_mask(_skin(), UPRIGHT, "under_nose", np.random.default_rng(7))
    b = draw_mask(_skin(), UPRIGHT, "under_nose", np.random.default_rng(7))
    c = draw_mask(_skin(), UPRIGHT, "under_nose", np.random.default_rng(8))
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_draw_mask_rejects_a_non_bgr_image() -> None:
    with pytest.raises(ValueError, match="uint8 BGR"):
        draw_mask(np.zeros((50, 50), np.uint8), UPRIGHT, "correct", np.random.default_rng(0))


def test_synth_config_is_checked_against_the_task() -> None:
    base = {"name": "t", "kind": "classification", "sources": []}
    with pytest.raises(ValueError, match="mask_weared_incorrect"):
        TaskConfig(**base, classes=["with_mask", "without_mask"], synthetic={"placements": {"under_nose": 3}})
    with pytest.raises(ValueError, match=">= 0"):
        SynthConfig(placements={"chin": -1})
    with pytest.raises(ValueError):
        SynthConfig(placements={"forehead": 2})


def _photo_rows(data_dir: Path, tmp_path: Path, n: int) -> list[ManifestRow]:
    """Face crops of real unmasked photos, as a prepared manifest would list them."""
    from maskops.detect.detectors import create_detector

    folder = data_dir / "facemask-photos" / "without_mask"
    if not folder.is_dir():
        pytest.skip(f"{folder} not found (set MASKOPS_DATA_DIR to the shared datasets)")
    photos = sorted(folder.glob("*.jp*g"))
    det = create_detector("yunet", score_threshold=0.6)
    rows = []
    for p in photos:
        img = cv2.imread(str(p))
        if img is None:
            continue
        faces = det.detect(img)
        if len(faces) != 1:
            continue
        x1, y1, x2, y2 = faces.xyxy[0].astype(int)
        if min(x2 - x1, y2 - y1) < 60:
            continue
        crop = img[y1:y2, x1:x2]
        out = tmp_path / "crops" / f"{p.stem}.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(out), crop)
        rows.append(
            ManifestRow(
                str(out), pixel_sha256(crop), "without_mask", "train", f"g:{p.stem}", "photos", str(p), ""
            )
        )
        if len(rows) == n:
            break
    if len(rows) < n:
        pytest.skip(f"only {len(rows)} single-face photos found")
    return rows


def test_synthesize_rows_paints_real_faces_into_labelled_rows(data_dir: Path, tmp_path: Path) -> None:
    from maskops.detect.detectors import create_detector

    rows = _photo_rows(data_dir, tmp_path, 4)
    val_row = ManifestRow(rows[0].path, "v" * 64, "without_mask", "val", "g:val", "photos", "", "")
    cfg = SynthConfig(placements={"under_nose": 3, "correct": 2, "chin": 0}, min_face_px=40, seed=3)
    det = create_detector("yunet", score_threshold=0.5, upscale=1.0)
    made, summary = synthesize_rows(
        [*rows, val_row], tmp_path / "out", cfg, det, ["with_mask", "without_mask", "mask_weared_incorrect"]
    )
    assert summary["candidates"] == 4  # the val row is never a source
    assert summary["made"] == {"under_nose": 3, "correct": 2}
    assert sorted(r.label for r in made) == ["mask_weared_incorrect"] * 3 + ["with_mask"] * 2
    groups = {r.group for r in rows}
    for r in made:
        assert r.split == "train" and r.group in groups
        assert r.source.startswith(("synth_under_nose:photos", "synth_correct:photos"))
        painted = cv2.imread(r.path, cv2.IMREAD_UNCHANGED)
        assert pixel_sha256(painted) == r.sha256
        source = cv2.imread(r.parent)
        assert painted.shape == source.shape and not np.array_equal(painted, source)
    # the same rows in another order make the same files
    again, _ = synthesize_rows(
        list(reversed(rows)),
        tmp_path / "again",
        cfg,
        det,
        ["with_mask", "without_mask", "mask_weared_incorrect"],
    )
    assert sorted(r.sha256 for r in again) == sorted(r.sha256 for r in made)
