"""Drift thresholds calibrated at release on bootstrap windows drawn photo by photo
(``maskops.monitor.reference.calibrate_thresholds``), on hand-made clustered samples: faces of one
"photo" share their size and class, as a crowd photo's faces do."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from maskops.monitor.drift import get_drift_test
from maskops.monitor.reference import (
    MIN_CALIBRATION_IMAGES,
    PROFILE_VERSION,
    CalibratedThreshold,
    ReferenceProfile,
    build_reference,
    calibrate_thresholds,
    compare_to_reference,
)

CLASSES = np.array(["with_mask", "without_mask", "mask_weared_incorrect"], dtype=object)


def photos(
    n_images: int, seed: int, size_shift: float = 0.0, mix: tuple[float, ...] = (0.6, 0.3, 0.1)
) -> dict:
    """Clustered faces: 1-10 faces a photo; a photo's faces share its size (+ small noise) and class."""
    rng = np.random.default_rng(seed)
    faces = np.minimum(rng.geometric(0.3, n_images), 10)
    image = np.repeat(np.arange(n_images), faces)
    size = rng.lognormal(3.5, 0.5, n_images)[image] * np.exp(0.05 * rng.normal(size=image.size)) + size_shift
    label = rng.choice(CLASSES, p=mix, size=n_images)[image]
    brightness = rng.beta(5, 5, n_images)
    return {"faces": faces, "image": image, "face_size": size, "label": list(label), "brightness": brightness}


def reference_of(sample: dict, **options: object) -> ReferenceProfile:
    return build_reference(
        numeric={"face_size": sample["face_size"], "brightness": sample["brightness"]},
        categorical={"label": sample["label"]},
        image_index={
            "face_size": sample["image"],
            "label": sample["image"],
            "brightness": np.arange(len(sample["faces"])),
        },
        faces_per_image=sample["faces"],
        **options,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="module")
def profile() -> ReferenceProfile:
    return reference_of(photos(400, seed=0), calibration_faces=(150, 300), calibration_windows=60)


def window(sample: dict, profile: ReferenceProfile, calibrated: bool = True) -> list:
    return compare_to_reference(
        profile,
        numeric={"face_size": sample["face_size"], "brightness": sample["brightness"]},
        categorical={"label": sample["label"]},
        calibrated=calibrated,
    )


def test_the_profile_holds_a_threshold_per_feature_and_test(profile: ReferenceProfile) -> None:
    cal = profile.calibration
    assert cal is not None
    assert profile.version == PROFILE_VERSION == 2
    assert cal.window_faces == [150, 300] and cal.windows == 60
    assert cal.alpha == pytest.approx(cal.family_alpha / 3)  # Bonferroni over the 3 features
    assert set(cal.thresholds) == {"face_size", "brightness", "label"}
    assert set(cal.thresholds["face_size"]) == {"ks", "psi", "wasserstein"}
    assert set(cal.thresholds["label"]) == {"chi_square"}
    ks = cal.thresholds["face_size"]["ks"]
    assert ks.n_current == sorted(ks.n_current) and len(ks.threshold) == 2
    # clustered faces: the calibrated KS threshold is far below the default 0.05
    assert max(ks.threshold) < 0.01
    # per-photo brightness is independent: its calibrated threshold stays of the order of alpha
    assert 1e-4 < cal.thresholds["brightness"]["ks"].threshold[-1] < 0.05


def test_a_clustered_null_fires_with_default_thresholds_not_with_calibrated_ones(
    profile: ReferenceProfile,
) -> None:
    default_alarms = calibrated_alarms = 0
    for seed in range(1, 11):
        sample = photos(90, seed=seed)  # ~300 faces from new photos of the same domain
        default_alarms += any(f.result.drifted for f in window(sample, profile, calibrated=False))
        results = window(sample, profile)
        calibrated_alarms += any(f.result.drifted for f in results)
        assert {f.result.threshold_source for f in results} == {"calibrated"}
    assert default_alarms >= 7
    assert calibrated_alarms == 0


@pytest.mark.parametrize(
    ("shift", "expected"),
    [
        ({"size_shift": 25.0}, "face_size"),  # bigger faces (about 1 std of the photos' sizes)
        ({"mix": (0.1, 0.8, 0.1)}, "label"),  # mostly unmasked
    ],
)
def test_a_real_shift_still_fires_with_calibrated_thresholds(
    profile: ReferenceProfile, shift: dict, expected: str
) -> None:
    results = window(photos(90, seed=50, **shift), profile)
    drifted = [f.feature for f in results if f.result.drifted]
    assert drifted == [expected]
    assert all(f.result.threshold_source == "calibrated" for f in results)


def test_a_given_threshold_overrides_the_calibrated_one(profile: ReferenceProfile) -> None:
    sample = photos(90, seed=3)
    results = compare_to_reference(
        profile, numeric={"face_size": sample["face_size"]}, thresholds={"face_size": 0.5}
    )
    assert [(r.result.threshold, r.result.threshold_source) for r in results] == [(0.5, "given")]


def test_a_tiny_window_is_not_enough_data_with_calibration(profile: ReferenceProfile) -> None:
    results = compare_to_reference(profile, numeric={"face_size": [30.0, 31.0]}, categorical={"label": []})
    for r in results:
        assert r.result.score is None and not r.result.drifted
        assert r.result.note is not None and r.result.note.startswith("not enough data")


def test_a_calibrated_profile_round_trips_through_json(profile: ReferenceProfile, tmp_path: Path) -> None:
    path = tmp_path / "reference.json"
    profile.save(path)
    assert ReferenceProfile.load(path) == profile
    assert json.loads(path.read_text())["version"] == 2


def test_a_version_1_profile_still_loads_and_uses_the_default_thresholds(
    profile: ReferenceProfile, tmp_path: Path
) -> None:
    data = profile.to_dict()
    data["version"] = 1
    del data["calibration"]
    path = tmp_path / "v1.json"
    path.write_text(json.dumps(data))
    old = ReferenceProfile.load(path)
    assert old.version == 1 and old.calibration is None
    results = window(photos(90, seed=1), old)
    for r in results:
        assert r.result.threshold_source == "default"
        assert r.result.threshold == get_drift_test(r.result.test).default_threshold


def test_the_threshold_is_interpolated_log_log_and_clamped() -> None:
    t = CalibratedThreshold(n_current=[100.0, 400.0], threshold=[1e-2, 1e-4], null_median=[0.5, 0.5])
    assert t.at(100) == pytest.approx(1e-2)
    assert t.at(200) == pytest.approx(1e-3)
    assert t.at(10) == pytest.approx(1e-2)  # clamped below
    assert t.at(10_000) == pytest.approx(1e-4)  # and above


def test_calibration_is_seeded() -> None:
    sample = photos(60, seed=9)
    a = reference_of(sample, calibration_faces=(100,), calibration_windows=20, seed=4)
    b = reference_of(sample, calibration_faces=(100,), calibration_windows=20, seed=4)
    assert a.calibration == b.calibration


def test_too_few_photos_keep_the_default_thresholds(caplog: pytest.LogCaptureFixture) -> None:
    sample = photos(MIN_CALIBRATION_IMAGES - 1, seed=2)
    profile = reference_of(sample)
    assert profile.calibration is None
    assert "not calibrated" in caplog.text


def test_window_sizes_beyond_the_reference_are_not_calibrated() -> None:
    sample = photos(40, seed=5)
    profile = reference_of(sample, calibration_faces=(50, 10_000), calibration_windows=20)
    assert profile.calibration is not None and profile.calibration.window_faces == [50]


def test_the_embedding_is_calibrated_on_its_photos() -> None:
    rng = np.random.default_rng(6)
    sample = photos(60, seed=6)
    centers = rng.normal(size=(60, 4))
    emb = centers[sample["image"]] + 0.05 * rng.normal(size=(len(sample["image"]), 4))
    cal = calibrate_thresholds(
        {},
        {},
        {"embedding": sample["image"]},
        sample["faces"],
        embeddings=emb,
        window_faces=(100,),
        windows=20,
    )
    assert set(cal.thresholds) == {"embedding"} and set(cal.thresholds["embedding"]) == {"mmd"}


@pytest.mark.parametrize(
    ("index", "faces", "options", "match"),
    [
        ([0, 1], [1, 1, 1], {}, "3 values but 2 image indices"),
        ([0, 1, 5], [1, 1, 1], {}, "image index outside 0..2"),
        ([0, 1, 2], [0, 0, 0], {}, "no reference image holds a face"),
        ([0, 1, 2], [1, 1, 1], {"windows": 5}, "at least 20 windows"),
        ([0, 1, 2], [1, 1, 1], {"family_alpha": 1.5}, "family_alpha"),
    ],
)
def test_calibration_input_errors(index: list, faces: list, options: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        calibrate_thresholds({"x": [1.0, 2.0, 3.0]}, {}, {"x": index}, faces, **options)
