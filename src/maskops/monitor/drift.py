"""Drift tests: small pure functions comparing a reference sample with a current window.

Each test is registered with ``@register_drift_test(name, default_threshold, kind)`` and called as
``test(reference, current, threshold=None) -> DriftResult``. Two kinds of score:

- p-value tests (``ks``, ``chi_square``, ``mmd``): drift when the p-value is *below* the threshold.
- distance tests (``wasserstein``, ``psi``): drift when the distance is *at or above* the threshold.

A window too small to judge (fewer than the test's ``min_samples`` on either side, empty included)
gives a result with ``score=None`` and ``drifted=False`` and a ``note`` saying so, never an exception:
a quiet hour at one site is not an error. Non-finite numeric values (a face without a detector score)
are dropped before testing.

The tests assume independent values. Faces of one photo are not (a crowd photo brings many faces of
one size, lighting and class), so on per-face features the default thresholds fire on unshifted
data far more often than their nominal rate; ``maskops.monitor.reference`` calibrates per-feature
thresholds at release for that, and passes them in as ``threshold`` (the functions here stay pure:
the result only records where its threshold came from, ``threshold_source``).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy import stats  # type: ignore[import-untyped]  # scipy ships no stubs

logger = logging.getLogger(__name__)

FeatureKind = Literal["numeric", "categorical", "embedding"]
ScoreKind = Literal["p_value", "distance"]
ThresholdSource = Literal["default", "given", "calibrated"]

MIN_SAMPLES = 10
PSI_BINS = 10
PSI_EPSILON = 1e-4
MMD_CAP = 500
MMD_PERMUTATIONS = 200
KS_MAX_REFERENCE = 1000  # above this, KS p-values flag differences too small to matter


@dataclass(frozen=True)
class DriftResult:
    """The outcome of one drift test on one feature.

    Attributes:
        test: the registered test name.
        score: the p-value (p-value tests) or the distance (distance tests); None without enough data.
        threshold: the threshold that was applied.
        drifted: True when the score crosses the threshold (never True without enough data).
        n_reference: values in the reference sample (after dropping non-finite ones).
        n_current: values in the current window (after dropping non-finite ones).
        statistic: the test statistic behind a p-value (KS D, chi-square, MMD²), else the distance.
        note: why there is no score (e.g. "not enough data"), else None.
        threshold_source: where ``threshold`` comes from: the test's ``default``, ``given`` by the
            caller, or ``calibrated`` at release on the reference (set by ``compare_to_reference``).
    """

    test: str
    score: float | None
    threshold: float
    drifted: bool
    n_reference: int
    n_current: int
    statistic: float | None = None
    note: str | None = None
    threshold_source: ThresholdSource = "default"

    @property
    def enough_data(self) -> bool:
        return self.score is not None


_Core = Callable[[np.ndarray, np.ndarray, float], tuple[float, float]]


@dataclass(frozen=True)
class DriftTest:
    """A registered test: ``name``, its ``default_threshold``, the feature ``kind`` it applies to and
    how its score reads (``score_kind``). Calling it runs the test."""

    name: str
    default_threshold: float
    kind: FeatureKind
    score_kind: ScoreKind
    min_samples: int
    core: _Core
    doc: str

    def __call__(
        self, reference: npt.ArrayLike, current: npt.ArrayLike, threshold: float | None = None
    ) -> DriftResult:
        """Run the test.

        Args:
            reference: the reference values (1-D; 2-D rows for an embedding test).
            current: the current window, same layout.
            threshold: overrides ``default_threshold``.

        Returns:
            The result; ``score=None`` (not enough data) when either side has fewer than
            ``min_samples`` values.
        """
        t = self.default_threshold if threshold is None else float(threshold)
        source: ThresholdSource = "default" if threshold is None else "given"
        ref, cur = _prepare(reference, self.kind), _prepare(current, self.kind)
        n_ref, n_cur = len(ref), len(cur)
        if min(n_ref, n_cur) < self.min_samples:
            note = f"not enough data: {n_ref} reference and {n_cur} current values, need {self.min_samples}"
            return DriftResult(self.name, None, t, False, n_ref, n_cur, note=note, threshold_source=source)
        score, statistic = self.core(ref, cur, t)
        drifted = score < t if self.score_kind == "p_value" else score >= t
        return DriftResult(
            self.name, float(score), t, bool(drifted), n_ref, n_cur, float(statistic), threshold_source=source
        )


class UnknownDriftTestError(ValueError):
    """Raised for a drift test name that is not registered."""


_TESTS: dict[str, DriftTest] = {}


def register_drift_test(
    name: str,
    default_threshold: float,
    kind: FeatureKind,
    score_kind: ScoreKind = "p_value",
    min_samples: int = MIN_SAMPLES,
) -> Callable[[_Core], DriftTest]:
    """Register ``core(reference, current, threshold) -> (score, statistic)`` as a drift test.

    The core receives cleaned arrays with at least ``min_samples`` values on each side; the
    returned ``DriftTest`` handles the threshold, small windows and the result.

    Raises:
        ValueError: a name registered twice.
    """

    def wrap(core: _Core) -> DriftTest:
        if name in _TESTS:
            raise ValueError(f"drift test {name!r} is already registered")
        test = DriftTest(name, default_threshold, kind, score_kind, min_samples, core, core.__doc__ or "")
        _TESTS[name] = test
        return test

    return wrap


def list_drift_tests() -> list[str]:
    """The registered test names, sorted."""
    return sorted(_TESTS)


def get_drift_test(name: str) -> DriftTest:
    """The registered test called ``name``.

    Raises:
        UnknownDriftTestError: (a ValueError) for an unknown name; the message lists the valid names.
    """
    try:
        return _TESTS[name]
    except KeyError:
        raise UnknownDriftTestError(
            f"unknown drift test {name!r}; choose one of: {', '.join(list_drift_tests())}"
        ) from None


def default_drift_test(kind: FeatureKind, n_reference: int = 0, n_unique: int | None = None) -> str:
    """The test to use for a feature when none is configured.

    Categories get chi-square, embeddings MMD. A numeric feature with at most 5 distinct values is
    treated as a category; otherwise KS for a reference of up to ``KS_MAX_REFERENCE`` values and the
    normalised Wasserstein distance above (with thousands of values KS calls negligible shifts
    significant; a distance keeps the threshold meaningful).

    Raises:
        ValueError: an unknown kind.
    """
    if kind == "categorical":
        return "chi_square"
    if kind == "embedding":
        return "mmd"
    if kind == "numeric":
        if n_unique is not None and n_unique <= 5:
            return "chi_square"
        return "ks" if n_reference <= KS_MAX_REFERENCE else "wasserstein"
    raise ValueError(f"unknown feature kind {kind!r}; choose one of: categorical, embedding, numeric")


def _prepare(values: npt.ArrayLike, kind: FeatureKind) -> np.ndarray:
    if kind == "categorical":
        arr = np.asarray(values, dtype=object).ravel()
        return arr[np.array([v is not None for v in arr], dtype=bool)] if arr.size else arr
    if kind == "embedding":
        arr = np.asarray(values, dtype=np.float64)
        if arr.size == 0:
            return arr.reshape(0, 0)
        if arr.ndim != 2:
            raise ValueError(f"embeddings must be 2-D (rows, dims), got shape {arr.shape}")
        # a row with a non-finite value is dropped; the common all-finite case makes no copy
        if np.isfinite(arr.sum()):
            return arr
        return arr[np.isfinite(arr).all(axis=1)]
    arr = np.asarray(values, dtype=np.float64).ravel()
    return arr[np.isfinite(arr)]


@register_drift_test("ks", default_threshold=0.05, kind="numeric")
def ks(reference: np.ndarray, current: np.ndarray, threshold: float) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov: any change in a numeric distribution (location, spread or
    shape), scored by its p-value. Sensitive to tiny shifts when samples are large."""
    res = stats.ks_2samp(reference, current)
    return float(res.pvalue), float(res.statistic)


@register_drift_test("wasserstein", default_threshold=0.1, kind="numeric", score_kind="distance")
def wasserstein(reference: np.ndarray, current: np.ndarray, threshold: float) -> tuple[float, float]:
    """Wasserstein-1 (earth mover's) distance divided by the reference's standard deviation: how far,
    in reference standard deviations, the current values moved (0.1 = a tenth of a std). A constant
    reference divides by 0.001 instead of 0."""
    norm = max(float(np.std(reference)), 0.001)
    d = float(stats.wasserstein_distance(reference, current)) / norm
    return d, d


def psi_bins(reference: np.ndarray, bins: int = PSI_BINS) -> np.ndarray:
    """The inner bin edges PSI uses: the reference's deciles (``bins`` quantile bins), repeated edges
    removed (a feature with few values gets fewer bins). The outer bins are open: (-inf, e0], ...,
    (e_last, inf)."""
    edges = np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1])
    return np.unique(edges)


def psi_from_shares(ref_share: np.ndarray, cur_share: np.ndarray, epsilon: float = PSI_EPSILON) -> float:
    """PSI of two binned distributions (shares summing to 1): sum((c - r) * ln(c / r)), with
    ``epsilon`` replacing empty bins so a bin seen on one side only scores high, not infinite."""
    r = np.maximum(np.asarray(ref_share, np.float64), epsilon)
    c = np.maximum(np.asarray(cur_share, np.float64), epsilon)
    return float(np.sum((c - r) * np.log(c / r)))


@register_drift_test("psi", default_threshold=0.2, kind="numeric", score_kind="distance")
def psi(reference: np.ndarray, current: np.ndarray, threshold: float) -> tuple[float, float]:
    """Population stability index over the reference's decile bins (``psi_bins``; empty bins count
    as ``PSI_EPSILON``): a change in where the values fall, weighing bins that empty out or fill up.
    Rule of thumb: below 0.1 stable, 0.1-0.2 moderate, 0.2 and above a significant shift."""
    edges = psi_bins(reference)
    ref_counts = np.bincount(np.searchsorted(edges, reference, side="left"), minlength=len(edges) + 1)
    cur_counts = np.bincount(np.searchsorted(edges, current, side="left"), minlength=len(edges) + 1)
    value = psi_from_shares(ref_counts / len(reference), cur_counts / len(current))
    return value, value


@register_drift_test("chi_square", default_threshold=0.05, kind="categorical", min_samples=5)
def chi_square(reference: np.ndarray, current: np.ndarray, threshold: float) -> tuple[float, float]:
    """Pearson chi-square test of homogeneity on the 2 x k table of category counts (reference,
    current): a change in the mix of categories, such as the class mix, a category appearing on one
    side only included. One category overall is no drift (p = 1)."""
    ref_counts, cur_counts = Counter(reference.tolist()), Counter(current.tolist())
    cats = sorted(set(ref_counts) | set(cur_counts), key=str)
    if len(cats) < 2:
        return 1.0, 0.0
    table = np.array([[ref_counts[c] for c in cats], [cur_counts[c] for c in cats]], dtype=np.float64)
    res = stats.chi2_contingency(table, correction=False)
    return float(res.pvalue), float(res.statistic)


def _mmd2_batch(kernel: np.ndarray, signs: np.ndarray) -> np.ndarray:
    # biased MMD² for each column of ``signs`` (1/n for reference rows, -1/m for current rows):
    # a^T K a, all permutations in one matrix product
    return np.einsum("ip,ip->p", signs, kernel @ signs)


@register_drift_test("mmd", default_threshold=0.05, kind="embedding")
def mmd(reference: np.ndarray, current: np.ndarray, threshold: float) -> tuple[float, float]:
    """Maximum mean discrepancy with a Gaussian (RBF) kernel between embedding rows: any change in
    the distribution of what the faces look like to the model. The bandwidth is the median distance
    between pooled rows (median heuristic); the p-value comes from ``MMD_PERMUTATIONS`` random
    relabellings (seeded: the same inputs give the same p-value). Each side is subsampled to
    ``MMD_CAP`` rows so a window of 100,000 faces costs the same as one of 500."""
    if reference.shape[1] != current.shape[1]:
        raise ValueError(
            f"embedding sizes differ: reference {reference.shape[1]}, current {current.shape[1]}"
        )
    rng = np.random.default_rng(0)
    if len(reference) > MMD_CAP:
        reference = reference[rng.choice(len(reference), MMD_CAP, replace=False)]
    if len(current) > MMD_CAP:
        current = current[rng.choice(len(current), MMD_CAP, replace=False)]
    pooled = np.vstack([reference, current])
    sq = np.sum(pooled**2, axis=1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * pooled @ pooled.T, 0.0)
    off_diag = d2[np.triu_indices(len(pooled), k=1)]
    sigma2 = float(np.median(off_diag[off_diag > 0])) if np.any(off_diag > 0) else 1.0
    kernel = np.exp(-d2 / (2 * sigma2))
    n, m = len(reference), len(current)
    base = np.concatenate([np.full(n, 1 / n), np.full(m, -1 / m)])
    perms = np.stack([rng.permutation(base) for _ in range(MMD_PERMUTATIONS)], axis=1)
    observed = float(_mmd2_batch(kernel, base[:, None])[0])
    null = _mmd2_batch(kernel, perms)
    p = (1 + int(np.sum(null >= observed - 1e-12))) / (1 + MMD_PERMUTATIONS)
    return p, observed
