"""Drift tests on small hand-made samples with hand-computed expected numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from maskops.monitor.drift import (
    DriftResult,
    UnknownDriftTestError,
    chi_square,
    default_drift_test,
    get_drift_test,
    ks,
    list_drift_tests,
    mmd,
    psi,
    psi_bins,
    psi_from_shares,
    register_drift_test,
    wasserstein,
)

REF = np.arange(10, dtype=float)


def test_registry_lists_the_tests_and_rejects_unknown_names() -> None:
    assert list_drift_tests() == ["chi_square", "ks", "mmd", "psi", "wasserstein"]
    assert get_drift_test("psi") is psi
    with pytest.raises(UnknownDriftTestError, match="choose one of: chi_square, ks, mmd, psi, wasserstein"):
        get_drift_test("kl")
    assert issubclass(UnknownDriftTestError, ValueError)


def test_registering_a_name_twice_is_an_error() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_drift_test("ks", 0.05, "numeric")(lambda r, c, t: (1.0, 0.0))


def test_every_test_documents_what_it_detects() -> None:
    for name in list_drift_tests():
        assert len(get_drift_test(name).doc) > 50, name


@pytest.mark.parametrize(
    ("kind", "n_reference", "n_unique", "expected", "error"),
    [
        ("numeric", 500, None, "ks", None),
        ("numeric", 1000, 40, "ks", None),
        ("numeric", 1001, None, "wasserstein", None),
        ("numeric", 500, 3, "chi_square", None),
        ("categorical", 10, None, "chi_square", None),
        ("embedding", 10, None, "mmd", None),
        ("text", 10, None, None, ValueError),
    ],
)
def test_default_drift_test(kind, n_reference, n_unique, expected, error) -> None:  # type: ignore[no-untyped-def]
    if error:
        with pytest.raises(error, match="unknown feature kind"):
            default_drift_test(kind, n_reference, n_unique)
    else:
        assert default_drift_test(kind, n_reference, n_unique) == expected


def test_ks_identical_and_shifted() -> None:
    same = ks(REF, REF)
    assert same == DriftResult("ks", 1.0, 0.05, False, 10, 10, 0.0)
    shifted = ks(REF, REF + 5)  # half of each sample lies beyond the other: D = 0.5
    assert shifted.statistic == pytest.approx(0.5)
    assert shifted.score == pytest.approx(0.16782, abs=1e-5)
    assert not shifted.drifted
    far = ks(REF, REF + 10)
    assert far.statistic == pytest.approx(1.0)
    assert far.score == pytest.approx(1.0825e-5, abs=1e-8)
    assert far.drifted


def test_ks_threshold_override_is_reported() -> None:
    res = ks(REF, REF + 5, threshold=0.2)
    assert res.threshold == 0.2
    assert res.drifted
    assert res.threshold_source == "given"
    default = ks(REF, REF + 5)
    assert (default.threshold, default.threshold_source) == (0.05, "default")
    assert ks([1.0], REF, threshold=0.2).threshold_source == "given"  # not enough data says it too


def test_wasserstein_is_in_reference_standard_deviations() -> None:
    assert wasserstein(REF, REF).score == 0.0
    res = wasserstein(REF, REF + 1)  # moved by 1; reference std sqrt(8.25)
    assert res.score == pytest.approx(1 / math.sqrt(8.25))
    assert res.score == pytest.approx(0.348155, abs=1e-6)
    assert res.drifted
    # a constant reference divides by 0.001, not by 0
    assert wasserstein(np.zeros(10), np.full(10, 0.01)).score == pytest.approx(10.0)


def test_psi_bins_are_reference_deciles() -> None:
    np.testing.assert_allclose(
        psi_bins(np.arange(100.0)), [9.9, 19.8, 29.7, 39.6, 49.5, 59.4, 69.3, 79.2, 89.1]
    )
    # repeated quantiles collapse: a two-valued feature gets 3 edges (0, the median 0.5, 1), not 9
    np.testing.assert_array_equal(psi_bins(np.array([0.0] * 50 + [1.0] * 50)), [0.0, 0.5, 1.0])


def test_psi_identical_half_and_empty_bins() -> None:
    ref = np.arange(100.0)
    assert psi(ref, ref).score == pytest.approx(0.0)
    # current 0..49: five bins at 0.2 instead of 0.1, five empty bins (epsilon 1e-4)
    expected = 5 * 0.1 * math.log(2) + 5 * (1e-4 - 0.1) * math.log(1e-4 / 0.1)
    res = psi(ref, np.arange(50.0))
    assert res.score == pytest.approx(expected)
    assert res.score == pytest.approx(3.796998, abs=1e-6)
    assert res.drifted


def test_psi_from_shares() -> None:
    assert psi_from_shares(np.array([0.5, 0.5]), np.array([0.5, 0.5])) == 0.0
    assert psi_from_shares(np.array([0.5, 0.5]), np.array([0.25, 0.75])) == pytest.approx(
        -0.25 * math.log(0.5) + 0.25 * math.log(1.5)
    )


def test_chi_square_class_mix() -> None:
    ref = ["with_mask"] * 10 + ["without_mask"] * 10
    assert chi_square(ref, ref).score == pytest.approx(1.0)
    res = chi_square(ref, ["with_mask"] * 18 + ["without_mask"] * 2)
    # expected counts 14 and 6 in each row: 2 * (16/14 + 16/6)
    assert res.statistic == pytest.approx(2 * (16 / 14 + 16 / 6))
    assert res.score == pytest.approx(math.erfc(math.sqrt(res.statistic / 2)))
    assert res.score == pytest.approx(0.0057755, abs=1e-7)
    assert res.drifted


def test_chi_square_new_category_and_single_category() -> None:
    ref = ["a"] * 10
    assert chi_square(ref, ["a"] * 10).score == 1.0
    res = chi_square(ref, ["b"] * 10)  # a category seen only in the current window
    assert res.statistic == pytest.approx(20.0)
    assert res.drifted


def test_mmd_identical_shifted_and_reproducible() -> None:
    rng = np.random.default_rng(1)
    ref = rng.normal(size=(60, 4))
    same = mmd(ref, ref)
    assert same.statistic == pytest.approx(0.0, abs=1e-12)
    assert same.score == 1.0
    assert not same.drifted
    shifted = mmd(ref, rng.normal(size=(60, 4)) + 1.0)
    assert shifted.score == pytest.approx(1 / 201)  # no permutation reaches the observed MMD²
    assert shifted.drifted
    assert mmd(ref, ref + 0.3) == mmd(ref, ref + 0.3)


def test_mmd_subsamples_large_windows_and_checks_dimensions() -> None:
    rng = np.random.default_rng(2)
    res = mmd(rng.normal(size=(2000, 3)), rng.normal(size=(3000, 3)))
    assert (res.n_reference, res.n_current) == (2000, 3000)
    assert not res.drifted
    with pytest.raises(ValueError, match="embedding sizes differ"):
        mmd(np.zeros((20, 3)), np.zeros((20, 4)))
    with pytest.raises(ValueError, match="must be 2-D"):
        mmd(np.zeros(20), np.zeros(20))


@pytest.mark.parametrize(
    ("test", "reference", "current"),
    [
        (ks, [], []),
        (ks, REF, REF[:3]),
        (wasserstein, [], REF),
        (psi, REF[:9], REF),
        (chi_square, ["a"] * 4, ["a"] * 10),
        (mmd, np.zeros((0, 4)), np.zeros((20, 4))),
        (mmd, [], []),
    ],
)
def test_small_windows_give_not_enough_data(test, reference, current) -> None:  # type: ignore[no-untyped-def]
    res = test(reference, current)
    assert res.score is None
    assert not res.enough_data
    assert not res.drifted
    assert res.note.startswith("not enough data")


def test_non_finite_values_are_dropped() -> None:
    cur = np.concatenate([REF, [np.nan, np.inf]])
    res = ks(REF, cur)
    assert res.n_current == 10
    assert res.score == 1.0
    assert chi_square(["a"] * 5 + [None], ["a"] * 5).n_reference == 5


def test_embedding_rows_with_non_finite_values_are_dropped() -> None:
    rng = np.random.default_rng(3)
    cur = rng.normal(size=(30, 4))
    cur[[2, 7], 1] = [np.nan, np.inf]
    res = mmd(rng.normal(size=(30, 4)), cur)
    assert (res.n_reference, res.n_current) == (30, 28)
    assert res.score is not None
