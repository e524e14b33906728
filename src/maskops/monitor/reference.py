"""The reference profile: what the model's inputs and outputs looked like when it was released,
kept small enough to ship beside the model card (a few kilobytes plus the embedding sample).

- numeric features (image quality, face size, face score, confidence, per-class probabilities):
  a quantile sketch, the values at ``QUANTILE_LEVELS`` evenly spaced levels, plus count, mean, std;
- categorical features (class mix): counts per category;
- embeddings: a seeded subsample of at most ``EMBEDDING_ROWS`` rows (MMD needs points, not moments);
- the measured accuracy on the reference images, when known;
- ``info``: where the profile comes from (task, model, images, what the accuracy was measured on).

``maskops.monitor.profile`` builds a model's profile from its task's val and test images; it is
saved beside the model card as ``<model>.reference.json``.

Drift tests need samples, so a numeric feature is compared through a stand-in sample read off its
sketch (``NumericSketch.sample``: evenly spaced quantiles, up to ``SKETCH_SAMPLE`` values). With
101 levels the stand-in's quantiles are exact at each percentile and linear in between, close
enough for KS, PSI over deciles and Wasserstein; the KS p-value uses the stand-in's size
(``min(n, SKETCH_SAMPLE)``) as the reference size.

**Thresholds calibrated at release** (profile version 2). The drift tests' p-values and their
default thresholds assume independent values, but faces are not: a crowd photo brings a dozen faces
of one size, lighting and class, so a window of 500 faces holds far fewer than 500 independent
draws and KS or chi-square p-values on per-face features (face size, face score, confidence, class
mix) fall under 0.05 on unshifted data most of the time. ``calibrate_thresholds`` measures the
spread each test actually has on data from the reference's own domain, with photos as the unit:

1. a replicate draws the reference's images with replacement (a bootstrap reference, sketched as
   the profile is) and, independently, a window: images with replacement, among those with at least
   one face (what a ``--last N`` window reads), until it holds N faces, for each N in
   ``CALIBRATION_FACES``;
2. every test of each feature's kind scores the window against the bootstrap reference, as
   ``compare_to_reference`` would (``CALIBRATION_WINDOWS`` replicates per size, seeded);
3. per feature, test and size, the threshold is the score reached with probability ``alpha`` under
   this null: an exponential tail fitted to the most extreme ``TAIL_SHARE`` of the replicates
   (on -ln p for p-value tests, where independence would give exactly Exp(1) and clustering a wider
   exponential; on the distance itself for distance tests), so that rates below 1/replicates are
   still estimated. ``alpha`` is ``FAMILY_ALPHA`` divided by the number of calibrated features
   (Bonferroni): a whole report on unshifted data fires in about ``FAMILY_ALPHA`` of windows.

``compare_to_reference`` then uses, for a feature and test the profile calibrated and no threshold
given, the threshold interpolated (log-log) at the window's number of values of that feature,
clamped to the calibrated range; ``DriftResult.threshold_source`` says ``calibrated``, ``default``
or ``given``. Limits: the calibration knows only the variation between photos of the reference's
own sources; a camera whose normal traffic differs from them (another site, another season) will
still drift, which is what drift means. The thresholds are those of windows drawn photo by photo:
a window of one long video stream, whose frames are even more alike, is more clustered than that.
The embedding's MMD is calibrated too (windows up to ``MMD_CAP`` faces), but its permutation
p-value cannot go below 1 / (1 + ``MMD_PERMUTATIONS``): when photos make the embeddings so clustered
that the calibrated threshold falls under that floor, the embedding test cannot fire at the aimed
rate, and the calibration says so by a threshold it never reaches (and a logged warning).
Window sizes larger than the reference's faces are skipped; a reference with fewer than
``MIN_CALIBRATION_IMAGES`` images holding a face is not calibrated at all.
Version-1 profiles (no calibration) still load and use the default thresholds.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from maskops.monitor.drift import (
    MMD_CAP,
    MMD_PERMUTATIONS,
    DriftResult,
    DriftTest,
    FeatureKind,
    default_drift_test,
    get_drift_test,
    list_drift_tests,
)

logger = logging.getLogger(__name__)

QUANTILE_LEVELS = 101
SKETCH_SAMPLE = 1000
EMBEDDING_ROWS = 256
PROFILE_VERSION = 2
READABLE_VERSIONS = (1, 2)
CALIBRATION_FACES = (250, 500, 1000, 2000)
CALIBRATION_WINDOWS = 200
FAMILY_ALPHA = 0.01
TAIL_SHARE = 0.2
MIN_CALIBRATION_IMAGES = 30
MIN_P_VALUE = 1e-300


@dataclass(frozen=True)
class NumericSketch:
    """A numeric feature's distribution: ``quantiles[i]`` is the value at level i / (levels - 1)."""

    n: int
    mean: float
    std: float
    quantiles: list[float]

    @classmethod
    def of(cls, values: np.ndarray | Sequence[float], levels: int = QUANTILE_LEVELS) -> NumericSketch:
        """The sketch of ``values`` (non-finite values dropped).

        Raises:
            ValueError: no finite value, or fewer than 2 levels.
        """
        if levels < 2:
            raise ValueError(f"levels must be >= 2, got {levels}")
        v = np.asarray(values, dtype=np.float64).ravel()
        v = v[np.isfinite(v)]
        if v.size == 0:
            raise ValueError("cannot sketch a feature without any finite value")
        q = np.quantile(v, np.linspace(0, 1, levels))
        return cls(n=int(v.size), mean=float(v.mean()), std=float(v.std()), quantiles=q.tolist())

    def sample(self, size: int | None = None) -> np.ndarray:
        """A stand-in sample of ``size`` values (default ``min(n, SKETCH_SAMPLE)``): the sketch's
        inverse CDF, linear between stored quantiles, at evenly spaced mid-points."""
        size = min(self.n, SKETCH_SAMPLE) if size is None else size
        levels = np.linspace(0, 1, len(self.quantiles))
        at = (np.arange(size) + 0.5) / size
        return np.interp(at, levels, np.asarray(self.quantiles))


@dataclass(frozen=True)
class CalibratedThreshold:
    """A test's threshold on a feature, calibrated on bootstrap windows (see the module docstring).

    Attributes:
        n_current: the feature's median number of values in the calibration windows of each size,
            increasing.
        threshold: the threshold at each of those sizes (a p-value or a distance, as the test reads).
        null_median: the median score of the windows at each size (how the test reads on no shift).
    """

    n_current: list[float]
    threshold: list[float]
    null_median: list[float]

    def at(self, n: int) -> float:
        """The threshold for a window with ``n`` values: log-log interpolation between the calibrated
        sizes, the nearest size's threshold outside them."""
        sizes = np.log(np.maximum(np.asarray(self.n_current, np.float64), 1.0))
        values = np.log(np.maximum(np.asarray(self.threshold, np.float64), MIN_P_VALUE))
        return float(np.exp(np.interp(np.log(max(n, 1)), sizes, values)))


@dataclass(frozen=True)
class Calibration:
    """Thresholds calibrated at release, per feature and test.

    Attributes:
        thresholds: feature -> test name -> threshold.
        family_alpha: the aimed false-alarm rate of a whole report on unshifted data.
        alpha: the per feature and test rate (``family_alpha`` / number of calibrated features).
        window_faces: the window sizes calibrated, in faces.
        windows: bootstrap windows per size.
        images: reference images drawn from (``with_faces`` of them hold a face).
        seed: the bootstrap's seed.
    """

    thresholds: dict[str, dict[str, CalibratedThreshold]]
    family_alpha: float
    alpha: float
    window_faces: list[int]
    windows: int
    images: int
    with_faces: int
    seed: int

    def threshold(self, feature: str, test: str, n: int) -> float | None:
        """The calibrated threshold of ``test`` on ``feature`` for ``n`` values, or None."""
        found = self.thresholds.get(feature, {}).get(test)
        return None if found is None else found.at(n)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Calibration:
        fields = {k: v for k, v in data.items() if k != "thresholds"}
        thresholds = {
            feature: {test: CalibratedThreshold(**t) for test, t in per_test.items()}
            for feature, per_test in data["thresholds"].items()
        }
        return cls(thresholds=thresholds, **fields)


@dataclass(frozen=True)
class ReferenceProfile:
    """The reference distributions of a release (see the module docstring)."""

    numeric: dict[str, NumericSketch] = field(default_factory=dict)
    categorical: dict[str, dict[str, int]] = field(default_factory=dict)
    embedding: list[list[float]] | None = None
    n_embedding: int = 0
    accuracy: float | None = None
    version: int = PROFILE_VERSION
    info: dict[str, Any] = field(default_factory=dict)
    calibration: Calibration | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReferenceProfile:
        """The profile saved by ``to_dict``.

        Version-1 profiles (before calibrated thresholds) load with ``calibration=None``.

        Raises:
            ValueError: another profile version, or a malformed profile.
        """
        version = data.get("version")
        if version not in READABLE_VERSIONS:
            readable = ", ".join(str(v) for v in READABLE_VERSIONS)
            raise ValueError(f"reference profile version {version!r}; this maskops reads versions {readable}")
        try:
            calibration = data.get("calibration")
            return cls(
                numeric={k: NumericSketch(**v) for k, v in data.get("numeric", {}).items()},
                categorical={
                    k: {c: int(n) for c, n in v.items()} for k, v in data.get("categorical", {}).items()
                },
                embedding=data.get("embedding"),
                n_embedding=int(data.get("n_embedding", 0)),
                accuracy=data.get("accuracy"),
                version=int(version),
                info=dict(data.get("info") or {}),
                calibration=None if calibration is None else Calibration.from_dict(calibration),
            )
        except (TypeError, AttributeError, ValueError, KeyError) as exc:
            raise ValueError(f"malformed reference profile: {exc}") from None

    def save(self, path: Path) -> None:
        """Write the profile as JSON."""
        path.write_text(json.dumps(self.to_dict()) + "\n")

    @classmethod
    def load(cls, path: Path) -> ReferenceProfile:
        """Read a profile written by ``save``.

        Raises:
            ValueError: not JSON, or not a profile this version reads.
            OSError: the file cannot be read.
        """
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path} is not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ValueError(f"{path} is not a reference profile")
        return cls.from_dict(data)


def probability_features(probabilities: np.ndarray, class_names: list[str]) -> dict[str, np.ndarray]:
    """The numeric features of class probabilities: ``confidence`` (the top probability) and
    ``p_<class>`` per class."""
    p = np.asarray(probabilities, dtype=np.float64).reshape(-1, len(class_names))
    features = {"confidence": p.max(axis=1) if len(p) else np.zeros(0)}
    features.update({f"p_{name}": p[:, i] for i, name in enumerate(class_names)})
    return features


def build_reference(
    numeric: Mapping[str, np.ndarray | Sequence[float]] | None = None,
    categorical: Mapping[str, Sequence[str]] | None = None,
    embeddings: np.ndarray | None = None,
    accuracy: float | None = None,
    embedding_rows: int = EMBEDDING_ROWS,
    seed: int = 0,
    info: Mapping[str, Any] | None = None,
    image_index: Mapping[str, np.ndarray | Sequence[int]] | None = None,
    faces_per_image: np.ndarray | Sequence[int] | None = None,
    calibration_faces: Sequence[int] = CALIBRATION_FACES,
    calibration_windows: int = CALIBRATION_WINDOWS,
    family_alpha: float = FAMILY_ALPHA,
) -> ReferenceProfile:
    """Summarise reference arrays into a profile.

    Args:
        numeric: feature name -> values (features without a finite value are left out, logged).
        categorical: feature name -> one category per row (None entries dropped).
        embeddings: (n, d) rows; a seeded subsample of ``embedding_rows`` is kept.
        accuracy: the measured accuracy on the reference images.
        embedding_rows: the cap on kept embedding rows.
        seed: the subsample's and the calibration's seed.
        info: where the profile comes from (kept as given).
        image_index: feature -> the reference image (0 to images - 1) of each of its values; with
            ``faces_per_image``, the features named here get calibrated thresholds
            (``calibrate_thresholds``). Without them, or with fewer than
            ``MIN_CALIBRATION_IMAGES`` images holding a face (logged), the profile has no calibration.
        faces_per_image: the number of faces of each reference image.
        calibration_faces / calibration_windows / family_alpha: see ``calibrate_thresholds``.

    Raises:
        ValueError: embeddings that are not 2-D; calibration inputs that do not line up.
    """
    sketches: dict[str, NumericSketch] = {}
    for name, values in (numeric or {}).items():
        try:
            sketches[name] = NumericSketch.of(values)
        except ValueError:
            logger.warning("reference feature %s has no finite value; left out of the profile", name)
    counts = {
        name: dict(sorted(Counter(str(v) for v in values if v is not None).items()))
        for name, values in (categorical or {}).items()
    }
    kept = None
    n_embedding = 0
    if embeddings is not None:
        e = np.asarray(embeddings, dtype=np.float64)
        if e.ndim != 2:
            raise ValueError(f"embeddings must be 2-D (rows, dims), got shape {e.shape}")
        n_embedding = len(e)
        if len(e) > embedding_rows:
            e = e[np.sort(np.random.default_rng(seed).choice(len(e), embedding_rows, replace=False))]
        # 5 significant digits: finer than the float16 embeddings the store keeps, half the JSON
        kept = [[float(f"{v:.5g}") for v in row] for row in e.tolist()]
    calibration = None
    with_faces = 0 if faces_per_image is None else int((np.asarray(faces_per_image) > 0).sum())
    if image_index is not None and with_faces < MIN_CALIBRATION_IMAGES:
        logger.warning(
            "%d reference image(s) with a face, fewer than %d: drift thresholds not calibrated "
            "(the tests' defaults apply)",
            with_faces,
            MIN_CALIBRATION_IMAGES,
        )
    elif image_index is not None and faces_per_image is not None:
        calibration = calibrate_thresholds(
            {k: v for k, v in (numeric or {}).items() if k in image_index and k in sketches},
            {k: v for k, v in (categorical or {}).items() if k in image_index},
            image_index,
            faces_per_image,
            embeddings=embeddings,
            embedding_rows=embedding_rows,
            window_faces=calibration_faces,
            windows=calibration_windows,
            family_alpha=family_alpha,
            seed=seed,
        )
    return ReferenceProfile(
        sketches, counts, kept, n_embedding, accuracy, info=dict(info or {}), calibration=calibration
    )


class _Grouped:
    """One feature's values grouped by reference image, to gather the values of drawn images."""

    def __init__(self, values: np.ndarray, index: np.ndarray, n_images: int) -> None:
        order = np.argsort(index, kind="stable")
        self.values = values[order]
        self.counts = np.bincount(index, minlength=n_images)
        self.starts = np.cumsum(self.counts) - self.counts

    def gather(self, images: np.ndarray) -> np.ndarray:
        lens = self.counts[images]
        offsets = np.repeat(self.starts[images] - (np.cumsum(lens) - lens), lens)
        return self.values[offsets + np.arange(int(lens.sum()))]


def _draw_window(
    faces: np.ndarray, eligible: np.ndarray, n_faces: int, rng: np.random.Generator
) -> np.ndarray:
    """Images of ``eligible`` drawn with replacement until they hold at least ``n_faces`` faces."""
    batch = int(n_faces / max(float(faces[eligible].mean()), 1e-9) * 1.5) + 10
    drawn = np.zeros(0, np.int64)
    total = 0
    while True:
        more = eligible[rng.integers(len(eligible), size=batch)]
        cum = total + np.cumsum(faces[more])
        if cum[-1] >= n_faces:
            return np.concatenate([drawn, more[: int(np.searchsorted(cum, n_faces)) + 1]])
        drawn, total = np.concatenate([drawn, more]), int(cum[-1])


def _tail_threshold(extremeness: np.ndarray, alpha: float) -> float:
    """The extremeness reached with probability ``alpha``: the empirical quantile when ``alpha`` is at
    least ``TAIL_SHARE``, else an exponential tail fitted to the excesses over the ``1 - TAIL_SHARE``
    quantile (the mean excess is the exponential's scale)."""
    if alpha >= TAIL_SHARE:
        return float(np.quantile(extremeness, 1 - alpha))
    u = float(np.quantile(extremeness, 1 - TAIL_SHARE))
    excess = extremeness[extremeness > u] - u
    scale = float(excess.mean()) if excess.size else 0.0
    return u + scale * float(np.log(TAIL_SHARE / alpha))


def calibrate_thresholds(
    numeric: Mapping[str, np.ndarray | Sequence[float]],
    categorical: Mapping[str, Sequence[str | None]],
    image_index: Mapping[str, np.ndarray | Sequence[int]],
    faces_per_image: np.ndarray | Sequence[int],
    *,
    embeddings: np.ndarray | None = None,
    embedding_rows: int = EMBEDDING_ROWS,
    window_faces: Sequence[int] = CALIBRATION_FACES,
    windows: int = CALIBRATION_WINDOWS,
    family_alpha: float = FAMILY_ALPHA,
    seed: int = 0,
) -> Calibration:
    """Per feature and test, the threshold that bootstrap windows of unshifted reference photos cross
    with probability ``family_alpha / features`` (the method is in the module docstring).

    Every registered test of the feature's kind is calibrated, so a test chosen with ``--test`` is
    calibrated too. The embedding (when given, with ``image_index["embedding"]``) is calibrated on
    windows of at most ``MMD_CAP`` faces (the test subsamples larger ones), against a bootstrap
    reference of ``embedding_rows`` rows as the profile keeps. A permutation p-value is never below
    1 / (1 + permutations): a calibrated threshold under that means the test cannot resolve the
    aimed rate on this reference and never fires.

    Args:
        numeric / categorical: the reference values, laid out as for ``build_reference``; the features
            with an entry in ``image_index`` are calibrated.
        image_index: feature -> the reference image (0 to images - 1) of each value, aligned with them
            (``embedding`` for the embedding rows).
        embeddings: (n, d) embedding rows, or None.
        embedding_rows: the rows of the bootstrap reference of the embedding.
        faces_per_image: the faces of each reference image (a window's size is counted in faces).
        window_faces: the window sizes (faces) calibrated.
        windows: bootstrap windows per size.
        family_alpha: the aimed false-alarm rate of a whole report on unshifted data.
        seed: the bootstrap's seed (the same inputs give the same thresholds).

    Raises:
        ValueError: an image index that does not line up with its feature's values or falls outside
            the images, no image with a face, fewer than 20 windows, or ``family_alpha`` not in (0, 1).
    """
    faces = np.asarray(faces_per_image, dtype=np.int64).ravel()
    if windows < 20:
        raise ValueError(f"calibration needs at least 20 windows per size, got {windows}")
    if not 0 < family_alpha < 1:
        raise ValueError(f"family_alpha must be in (0, 1), got {family_alpha}")
    eligible = np.flatnonzero(faces > 0)
    if eligible.size == 0:
        raise ValueError("cannot calibrate thresholds: no reference image holds a face")
    groups: dict[str, tuple[FeatureKind, _Grouped]] = {}
    for name, values in [*numeric.items(), *categorical.items()]:
        if name not in image_index:
            continue
        kind: FeatureKind = "numeric" if name in numeric else "categorical"
        index = np.asarray(image_index[name], dtype=np.int64).ravel()
        if kind == "numeric":
            v = np.asarray(values, dtype=np.float64).ravel()
            keep = np.isfinite(v)
        else:
            v = np.asarray([None if x is None else str(x) for x in values], dtype=object)
            keep = np.array([x is not None for x in v], dtype=bool)
        if len(v) != len(index):
            raise ValueError(f"feature {name}: {len(v)} values but {len(index)} image indices")
        if len(index) and (index.min() < 0 or index.max() >= len(faces)):
            raise ValueError(f"feature {name}: image index outside 0..{len(faces) - 1}")
        if keep.any():
            groups[name] = (kind, _Grouped(v[keep], index[keep], len(faces)))
    if embeddings is not None and "embedding" in image_index:
        e = np.asarray(embeddings, dtype=np.float64)
        index = np.asarray(image_index["embedding"], dtype=np.int64).ravel()
        if e.ndim != 2 or len(e) != len(index):
            raise ValueError(f"embedding: {e.shape} rows but {len(index)} image indices")
        rows = np.flatnonzero(np.isfinite(e).all(axis=1))
        if rows.size:
            groups["embedding"] = ("embedding", _Grouped(e[rows], index[rows], len(faces)))
    alpha = family_alpha / max(len(groups), 1)
    rng = np.random.default_rng(seed)
    total_faces = int(faces.sum())
    # a window larger than the reference says nothing the largest that fits does not
    sizes = sorted({int(n) for n in window_faces if n <= total_faces}) or [total_faces]
    # scores[feature][test][size index] = the replicates' scores; lengths[feature][size index]
    scores: dict[str, dict[str, list[list[float]]]] = {
        f: {t: [[] for _ in sizes] for t in list_drift_tests() if get_drift_test(t).kind == kind}
        for f, (kind, _) in groups.items()
    }
    lengths: dict[str, list[list[int]]] = {f: [[] for _ in sizes] for f in groups}
    for si, n_faces in enumerate(sizes):
        for _ in range(windows):
            ref_images = rng.integers(len(faces), size=len(faces))
            win_images = _draw_window(faces, eligible, n_faces, rng)
            for name, (kind, grouped) in groups.items():
                if kind == "embedding" and n_faces > max(MMD_CAP, sizes[0]):
                    continue
                ref, cur = grouped.gather(ref_images), grouped.gather(win_images)
                if kind == "numeric":
                    if ref.size == 0:
                        continue
                    ref = NumericSketch.of(ref).sample()
                elif kind == "embedding" and len(ref) > embedding_rows:
                    ref = ref[rng.choice(len(ref), embedding_rows, replace=False)]
                lengths[name][si].append(len(cur))
                for test_name, per_size in scores[name].items():
                    result = get_drift_test(test_name)(ref, cur)
                    if result.score is not None:
                        per_size[si].append(result.score)
    thresholds: dict[str, dict[str, CalibratedThreshold]] = {}
    for name, per_test in scores.items():
        for test_name, per_size in per_test.items():
            test = get_drift_test(test_name)
            n_cur, found, medians = [], [], []
            for si, values in enumerate(per_size):
                if len(values) < windows // 2:  # mostly "not enough data" (or not run) at this size
                    continue
                v = np.asarray(values, np.float64)
                if test.score_kind == "p_value":
                    t = float(np.exp(-_tail_threshold(-np.log(np.maximum(v, MIN_P_VALUE)), alpha)))
                    t = max(t, MIN_P_VALUE)
                else:
                    t = _tail_threshold(v, alpha)
                n_cur.append(float(np.median(lengths[name][si])))
                found.append(t)
                medians.append(float(np.median(v)))
            if n_cur and test_name == "mmd" and max(found) < 1 / (1 + MMD_PERMUTATIONS):
                logger.warning(
                    "the calibrated %s threshold of %s (%.2g) is below the smallest permutation p-value "
                    "(1/%d): the embedding test will not fire",
                    test_name,
                    name,
                    max(found),
                    1 + MMD_PERMUTATIONS,
                )
            if n_cur:
                order = np.argsort(n_cur, kind="stable")
                thresholds.setdefault(name, {})[test_name] = CalibratedThreshold(
                    [n_cur[i] for i in order], [found[i] for i in order], [medians[i] for i in order]
                )
    logger.info(
        "calibrated thresholds of %d feature(s) on %d bootstrap windows of %s faces (alpha %.2g each)",
        len(thresholds),
        windows * len(sizes),
        "/".join(str(n) for n in sizes),
        alpha,
    )
    return Calibration(
        thresholds=thresholds,
        family_alpha=family_alpha,
        alpha=alpha,
        window_faces=sizes,
        windows=windows,
        images=len(faces),
        with_faces=int(eligible.size),
        seed=seed,
    )


@dataclass(frozen=True)
class FeatureDrift:
    """One feature's drift test against the reference."""

    feature: str
    kind: FeatureKind
    result: DriftResult


def compare_to_reference(
    profile: ReferenceProfile,
    numeric: Mapping[str, np.ndarray | Sequence[float]] | None = None,
    categorical: Mapping[str, Sequence[str]] | None = None,
    embeddings: np.ndarray | None = None,
    tests: Mapping[str, str] | None = None,
    thresholds: Mapping[str, float] | None = None,
    calibrated: bool = True,
) -> list[FeatureDrift]:
    """Run a drift test on every feature present in both the profile and the current window.

    A feature's threshold is, in order: the one given in ``thresholds``, the profile's calibrated
    one for that feature and test at the window's number of values (``calibrated`` and a version-2
    profile with one), else the test's default. ``result.threshold_source`` says which.

    Args:
        profile: the reference.
        numeric / categorical / embeddings: the current window, laid out as for ``build_reference``.
        tests: feature name (``embedding`` for the embeddings) -> test name, overriding
            ``default_drift_test``.
        thresholds: feature name -> threshold, overriding the calibrated and default ones.
        calibrated: False ignores the profile's calibrated thresholds.

    Returns:
        One entry per compared feature: numeric, then categorical (sorted by name), then the embedding.

    Raises:
        UnknownDriftTestError: a test name in ``tests`` that is not registered.
        ValueError: a test in ``tests`` for another kind of feature (``ks`` for the class mix).
    """
    tests = tests or {}
    given = thresholds or {}
    calibration = profile.calibration if calibrated else None

    def run(name: str, test: DriftTest, reference: Any, current: Any, n_current: int) -> DriftResult:
        if name in given:
            return test(reference, current, given[name])
        found = None if calibration is None else calibration.threshold(name, test.name, n_current)
        if found is None:
            return test(reference, current)
        return replace(test(reference, current, found), threshold_source="calibrated")

    out: list[FeatureDrift] = []
    for name in sorted(set(profile.numeric) & set(numeric or {})):
        sketch = profile.numeric[name]
        test = _test_for(name, "numeric", tests.get(name) or default_drift_test("numeric", sketch.n))
        values = np.asarray((numeric or {})[name], dtype=np.float64).ravel()
        n_current = int(np.isfinite(values).sum())
        out.append(FeatureDrift(name, "numeric", run(name, test, sketch.sample(), values, n_current)))
    for name in sorted(set(profile.categorical) & set(categorical or {})):
        counts = profile.categorical[name]
        reference = np.repeat(np.array(list(counts), dtype=object), list(counts.values()))
        current = [str(v) for v in (categorical or {})[name] if v is not None]
        test = _test_for(name, "categorical", tests.get(name) or default_drift_test("categorical"))
        out.append(FeatureDrift(name, "categorical", run(name, test, reference, current, len(current))))
    if profile.embedding is not None and embeddings is not None and len(embeddings):
        width = len(profile.embedding[0]) if profile.embedding else 0
        if np.asarray(embeddings).shape[1] != width:
            logger.warning(
                "embeddings of width %d against a reference of width %d (another model?): not tested",
                np.asarray(embeddings).shape[1],
                width,
            )
            return out
        test = _test_for("embedding", "embedding", tests.get("embedding") or default_drift_test("embedding"))
        result = run("embedding", test, np.asarray(profile.embedding), embeddings, len(embeddings))
        out.append(FeatureDrift("embedding", "embedding", result))
    return out


def _test_for(feature: str, kind: FeatureKind, name: str) -> DriftTest:
    test = get_drift_test(name)
    if test.kind != kind:
        raise ValueError(f"drift test {name!r} is for {test.kind} features; {feature} is {kind}")
    return test
