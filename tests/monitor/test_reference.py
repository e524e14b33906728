"""The reference profile: sketches, JSON round trip, and drift against it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from maskops.monitor.reference import (
    NumericSketch,
    ReferenceProfile,
    build_reference,
    compare_to_reference,
    probability_features,
)


def test_sketch_of_0_to_100_is_the_integers() -> None:
    sketch = NumericSketch.of(np.arange(101.0))
    assert sketch.n == 101
    assert sketch.mean == 50.0
    assert sketch.std == pytest.approx(np.arange(101.0).std())
    assert sketch.quantiles == pytest.approx(list(range(101)))
    # the stand-in sample: 101 mid-points of the inverse CDF
    np.testing.assert_allclose(sketch.sample()[:3], [0.5 * 100 / 101, 1.5 * 100 / 101, 2.5 * 100 / 101])


def test_sketch_sample_size_is_capped() -> None:
    sketch = NumericSketch.of(np.linspace(0, 1, 5000))
    sample = sketch.sample()
    assert len(sample) == 1000
    assert sample.min() == pytest.approx(0.0005)
    assert sample.max() == pytest.approx(0.9995)
    assert len(sketch.quantiles) == 101


@pytest.mark.parametrize(
    ("values", "levels", "match"),
    [([], 101, "without any finite"), ([np.nan], 101, "finite"), ([1.0], 1, "levels")],
)
def test_sketch_errors(values, levels, match) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=match):
        NumericSketch.of(values, levels)


def test_probability_features() -> None:
    f = probability_features(np.array([[0.9, 0.1], [0.3, 0.7]]), ["with_mask", "without_mask"])
    assert list(f) == ["confidence", "p_with_mask", "p_without_mask"]
    np.testing.assert_allclose(f["confidence"], [0.9, 0.7])
    np.testing.assert_allclose(f["p_without_mask"], [0.1, 0.7])


def _profile() -> ReferenceProfile:
    rng = np.random.default_rng(0)
    return build_reference(
        numeric={"brightness": rng.uniform(0.3, 0.7, 800), "face_score": [np.nan] * 3},
        categorical={"label": ["with_mask"] * 600 + ["without_mask"] * 200 + [None]},
        embeddings=rng.normal(size=(1000, 4)),
        accuracy=0.93,
        embedding_rows=100,
    )


def test_build_reference_summarises_not_rows(tmp_path) -> None:  # type: ignore[no-untyped-def]
    profile = _profile()
    assert list(profile.numeric) == ["brightness"]  # face_score has no finite value
    assert profile.categorical == {"label": {"with_mask": 600, "without_mask": 200}}
    assert profile.n_embedding == 1000
    assert len(profile.embedding) == 100
    path = tmp_path / "reference.json"
    profile.save(path)
    assert ReferenceProfile.load(path) == profile
    assert path.stat().st_size < 20_000


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("not json", "is not JSON"),
        ("[1, 2]", "is not a reference profile"),
        (json.dumps({"version": 99}), "version 99"),
        (json.dumps({"version": 1, "numeric": {"x": {"n": 1}}}), "malformed"),
    ],
)
def test_load_errors(tmp_path, text, match) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "reference.json"
    path.write_text(text)
    with pytest.raises(ValueError, match=match):
        ReferenceProfile.load(path)


def test_compare_same_distribution_no_drift() -> None:
    rng = np.random.default_rng(1)
    results = compare_to_reference(
        _profile(),
        numeric={"brightness": rng.uniform(0.3, 0.7, 500), "sharpness": [1.0] * 20},
        categorical={"label": ["with_mask"] * 300 + ["without_mask"] * 100},
        embeddings=rng.normal(size=(200, 4)),
    )
    assert [(r.feature, r.kind, r.result.test) for r in results] == [
        ("brightness", "numeric", "ks"),
        ("label", "categorical", "chi_square"),
        ("embedding", "embedding", "mmd"),
    ]
    assert not any(r.result.drifted for r in results)
    assert results[0].result.n_reference == 800


def test_compare_darkened_and_class_mix_shift_drift() -> None:
    rng = np.random.default_rng(2)
    results = compare_to_reference(
        _profile(),
        numeric={"brightness": rng.uniform(0.3, 0.7, 500) * 0.5},
        categorical={"label": ["without_mask"] * 400},
        embeddings=rng.normal(size=(200, 4)) + 1.0,
        tests={"brightness": "psi"},
    )
    assert [(r.feature, r.result.test, r.result.drifted) for r in results] == [
        ("brightness", "psi", True),
        ("label", "chi_square", True),
        ("embedding", "mmd", True),
    ]


def test_compare_tiny_window_is_not_enough_data() -> None:
    results = compare_to_reference(_profile(), numeric={"brightness": [0.5, 0.6]}, categorical={"label": []})
    assert [r.result.note is not None and r.result.note.startswith("not enough data") for r in results] == [
        True,
        True,
    ]


def test_compare_rejects_a_test_of_another_kind() -> None:
    with pytest.raises(ValueError, match="drift test 'mmd' is for embedding features; brightness is numeric"):
        compare_to_reference(_profile(), numeric={"brightness": [0.5] * 20}, tests={"brightness": "mmd"})
