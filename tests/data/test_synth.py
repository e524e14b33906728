"""Synthetic masks: face axes, placement geometry, painting, and the manifest rows they make."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from maskops.config import SynthConfig, TaskConfig
from maskops.data.crops import pixel_sha256
from maskops.data.manifest import ManifestRow
from maskops.data.synth import (
    Geometry,
    draw_mask,
    face_frame,
    mask_polygon,
    synthesize_rows,
    transplant_mask,
)

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


@pytest.mark.parametrize("seed", range(5))
def test_geometry_moves_the_under_nose_edge_and_lifts_the_corners(seed: int) -> None:
    f = face_frame(UPRIGHT)  # nose tip 22 px, mouth 40 px below the eyes
    high = Geometry(under_nose_top=(0.0, 0.1), side_lift=0.5)
    edge = _depths(mask_polygon(f, "under_nose", np.random.default_rng(seed), high))[:9]
    middle, corners = edge[4], edge[[0, 8]]
    assert f.nose - 1.0 <= middle <= f.nose + 0.1 * (f.mouth - f.nose)  # just under the nose tip
    assert np.all(corners <= middle + 1.3)  # the corners never sit lower than the middle's arch allows
    lifted = [
        _depths(mask_polygon(f, "under_nose", np.random.default_rng(s), high))[[0, 8]].mean()
        for s in range(20)
    ]
    flat = [
        _depths(mask_polygon(f, "under_nose", np.random.default_rng(s), Geometry((0.0, 0.1))))[[0, 8]].mean()
        for s in range(20)
    ]
    assert np.mean(lifted) < np.mean(flat) - 2.0  # up to 11 px of lift: about 5 px on average
    # the correct placement ignores both
    a = mask_polygon(f, "correct", np.random.default_rng(seed), high)
    b = mask_polygon(f, "correct", np.random.default_rng(seed))
    np.testing.assert_array_equal(a, b)


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


def _donor() -> tuple[np.ndarray, np.ndarray]:
    """A correctly masked face: skin above the nose's middle, green fabric (BGR 40, 200, 60) below."""
    img = _skin()
    img[51:, :] = (40, 200, 60)  # from 0.5 x nose depth (eyes at y=40, nose tip at y=62)
    return img, UPRIGHT * 1.0


def test_transplant_mask_puts_the_donors_fabric_where_the_placement_says() -> None:
    img = _skin()
    donor, donor_lm = _donor()
    nose, mouth, chin = (50, 60), (50, 82), (50, 100)  # (x, y)
    green = np.array([40, 200, 60])

    def is_fabric(out: np.ndarray, xy: tuple[int, int]) -> bool:
        px = out[xy[1], xy[0]].astype(int)
        return bool(px[1] > px[0] + 80 and px[1] > px[2] + 80)  # green dominates, as in the donor

    def untouched(out: np.ndarray, xy: tuple[int, int]) -> bool:
        return int(np.abs(out[xy[1], xy[0]].astype(int) - img[xy[1], xy[0]]).max()) <= 1

    for seed in range(4):
        under = transplant_mask(img, UPRIGHT, donor, donor_lm, "under_nose", np.random.default_rng(seed))
        assert untouched(under, nose) and is_fabric(under, mouth)
        correct = transplant_mask(img, UPRIGHT, donor, donor_lm, "correct", np.random.default_rng(seed))
        assert is_fabric(correct, nose) and is_fabric(correct, mouth)
        chin_only = transplant_mask(img, UPRIGHT, donor, donor_lm, "chin", np.random.default_rng(seed))
        assert untouched(chin_only, (mouth[0], mouth[1] - 2)) and is_fabric(chin_only, chin)
    # the donor's light is matched to the face's: a dim face gets dimmer fabric
    dim = (_skin() * 0.5).astype(np.uint8)
    bright_fabric = transplant_mask(img, UPRIGHT, donor, donor_lm, "under_nose", np.random.default_rng(0))
    dim_fabric = transplant_mask(dim, UPRIGHT, donor, donor_lm, "under_nose", np.random.default_rng(0))
    assert dim_fabric[mouth[1], mouth[0], 1] < bright_fabric[mouth[1], mouth[0], 1] - 30
    assert int(bright_fabric[mouth[1], mouth[0], 1]) == pytest.approx(int(green[1]), abs=30)
    assert np.array_equal(img, _skin())  # the inputs are left alone
    assert np.array_equal(donor, _donor()[0])


def test_transplant_mask_shrinks_a_large_donor_and_follows_a_tilted_head() -> None:
    big, big_lm = _donor()
    big = cv2.resize(big, (400, 480), interpolation=cv2.INTER_NEAREST)  # 4x the face
    centre = UPRIGHT.mean(0)
    a = np.deg2rad(20.0)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    tilted = ((UPRIGHT - centre) @ rot.T + centre).astype(np.float32)
    out = transplant_mask(_skin(), tilted, big, big_lm * 4.0, "under_nose", np.random.default_rng(2))
    mouth = (tilted[3] + tilted[4]) / 2.0
    x, y = np.round(mouth).astype(int)
    assert out[y, x, 1] > out[y, x, 0] + 80  # fabric on the tilted mouth
    nx, ny = np.round(tilted[2]).astype(int)
    assert np.abs(out[ny, nx].astype(int) - _skin()[ny, nx]).max() <= 1  # its nose left free


def test_transplant_mask_is_deterministic_and_checks_its_inputs() -> None:
    donor, donor_lm = _donor()
    a = transplant_mask(_skin(), UPRIGHT, donor, donor_lm, "under_nose", np.random.default_rng(7))
    b = transplant_mask(_skin(), UPRIGHT, donor, donor_lm, "under_nose", np.random.default_rng(7))
    assert np.array_equal(a, b)
    with pytest.raises(ValueError, match="donor must be HxWx3 uint8 BGR"):
        transplant_mask(_skin(), UPRIGHT, donor[:, :, 0], donor_lm, "correct", np.random.default_rng(0))
    with pytest.raises(ValueError, match="nose"):
        bad = np.array([[35, 40], [65, 40], [50, 85], [38, 80], [62, 80]], np.float32)
        transplant_mask(_skin(), UPRIGHT, donor, bad, "correct", np.random.default_rng(0))


def test_synth_config_is_checked_against_the_task() -> None:
    base = {"name": "t", "kind": "classification", "sources": []}
    with pytest.raises(ValueError, match="mask_weared_incorrect"):
        TaskConfig(**base, classes=["with_mask", "without_mask"], synthetic={"placements": {"under_nose": 3}})
    with pytest.raises(ValueError, match=">= 0"):
        SynthConfig(placements={"chin": -1})
    with pytest.raises(ValueError):
        SynthConfig(placements={"forehead": 2})
    with pytest.raises(ValueError, match="mask_on"):
        TaskConfig(
            **base,
            classes=["with_mask", "without_mask", "mask_weared_incorrect"],
            synthetic={"placements": {"under_nose": 3}, "real_texture": 0.5, "texture_label": "mask_on"},
        )
    with pytest.raises(ValueError, match="less than or equal to 1"):
        SynthConfig(placements={"chin": 1}, real_texture=1.5)
    with pytest.raises(ValueError, match="under_nose_top"):
        SynthConfig(placements={"under_nose": 1}, under_nose_top=(0.5, 0.2))


def _photo_rows(data_dir: Path, tmp_path: Path, n: int, label: str = "without_mask") -> list[ManifestRow]:
    """Face crops of real photos of one class, as a prepared manifest would list them."""
    from maskops.detect.detectors import create_detector

    folder = data_dir / "facemask-photos" / label
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
        out = tmp_path / "crops" / label / f"{p.stem}.png"
        out.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(out), crop)
        rows.append(
            ManifestRow(
                str(out), pixel_sha256(crop), label, "train", f"g:{label}:{p.stem}", "photos", str(p), ""
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


def test_synthesize_rows_cuts_real_fabric_from_masked_faces(data_dir: Path, tmp_path: Path) -> None:
    from maskops.detect.detectors import create_detector

    classes = ["with_mask", "without_mask", "mask_weared_incorrect"]
    targets = _photo_rows(data_dir, tmp_path, 3)
    donors = _photo_rows(data_dir, tmp_path, 3, label="with_mask")
    det = create_detector("yunet", score_threshold=0.5, upscale=1.0)
    cfg = SynthConfig(placements={"under_nose": 4, "correct": 2}, min_face_px=40, seed=1, real_texture=1.0)
    made, summary = synthesize_rows([*targets, *donors], tmp_path / "out", cfg, det, classes)
    assert summary["candidates"] == 3 and summary["texture_donors"] >= 1
    assert summary["made"] == {"under_nose": 4, "correct": 2}
    assert summary["real_texture"] == summary["made"]  # every crop wears real fabric
    target_groups = {r.group for r in targets}
    assert all(r.group in target_groups and r.split == "train" for r in made)  # never a donor's row
    painted, _ = synthesize_rows(
        [*targets, *donors], tmp_path / "painted", cfg.model_copy(update={"real_texture": 0.0}), det, classes
    )
    assert not {r.sha256 for r in painted} & {r.sha256 for r in made}
    # half and half: the share is drawn per crop, the painted ones are the same as without texture
    half, half_summary = synthesize_rows(
        [*targets, *donors], tmp_path / "half", cfg.model_copy(update={"real_texture": 0.5}), det, classes
    )
    n_real = sum(half_summary["real_texture"].values())
    assert 0 < n_real < 6
    assert len({r.sha256 for r in half} & {r.sha256 for r in painted}) == 6 - n_real
    # no usable donor: a clear error, not painted masks in disguise
    with pytest.raises(ValueError, match="none of the 0 train crops of 'with_mask'"):
        synthesize_rows(targets, tmp_path / "none", cfg, det, classes)
