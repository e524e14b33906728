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
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from maskops.monitor.drift import DriftResult, DriftTest, FeatureKind, default_drift_test, get_drift_test

logger = logging.getLogger(__name__)

QUANTILE_LEVELS = 101
SKETCH_SAMPLE = 1000
EMBEDDING_ROWS = 256
PROFILE_VERSION = 1


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
class ReferenceProfile:
    """The reference distributions of a release (see the module docstring)."""

    numeric: dict[str, NumericSketch] = field(default_factory=dict)
    categorical: dict[str, dict[str, int]] = field(default_factory=dict)
    embedding: list[list[float]] | None = None
    n_embedding: int = 0
    accuracy: float | None = None
    version: int = PROFILE_VERSION
    info: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReferenceProfile:
        """The profile saved by ``to_dict``.

        Raises:
            ValueError: another profile version, or a malformed profile.
        """
        version = data.get("version")
        if version != PROFILE_VERSION:
            raise ValueError(f"reference profile version {version!r}; this maskops reads {PROFILE_VERSION}")
        try:
            return cls(
                numeric={k: NumericSketch(**v) for k, v in data.get("numeric", {}).items()},
                categorical={
                    k: {c: int(n) for c, n in v.items()} for k, v in data.get("categorical", {}).items()
                },
                embedding=data.get("embedding"),
                n_embedding=int(data.get("n_embedding", 0)),
                accuracy=data.get("accuracy"),
                info=dict(data.get("info") or {}),
            )
        except (TypeError, AttributeError, ValueError) as exc:
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
) -> ReferenceProfile:
    """Summarise reference arrays into a profile.

    Args:
        numeric: feature name -> values (features without a finite value are left out, logged).
        categorical: feature name -> one category per row (None entries dropped).
        embeddings: (n, d) rows; a seeded subsample of ``embedding_rows`` is kept.
        accuracy: the measured accuracy on the reference images.
        embedding_rows: the cap on kept embedding rows.
        seed: the subsample's seed.
        info: where the profile comes from (kept as given).

    Raises:
        ValueError: embeddings that are not 2-D.
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
    return ReferenceProfile(sketches, counts, kept, n_embedding, accuracy, info=dict(info or {}))


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
) -> list[FeatureDrift]:
    """Run a drift test on every feature present in both the profile and the current window.

    Args:
        profile: the reference.
        numeric / categorical / embeddings: the current window, laid out as for ``build_reference``.
        tests: feature name (``embedding`` for the embeddings) -> test name, overriding
            ``default_drift_test``.

    Returns:
        One entry per compared feature: numeric, then categorical (sorted by name), then the embedding.

    Raises:
        UnknownDriftTestError: a test name in ``tests`` that is not registered.
        ValueError: a test in ``tests`` for another kind of feature (``ks`` for the class mix).
    """
    tests = tests or {}
    out: list[FeatureDrift] = []
    for name in sorted(set(profile.numeric) & set(numeric or {})):
        sketch = profile.numeric[name]
        test = _test_for(name, "numeric", tests.get(name) or default_drift_test("numeric", sketch.n))
        out.append(FeatureDrift(name, "numeric", test(sketch.sample(), (numeric or {})[name])))
    for name in sorted(set(profile.categorical) & set(categorical or {})):
        counts = profile.categorical[name]
        reference = np.repeat(np.array(list(counts), dtype=object), list(counts.values()))
        current = [str(v) for v in (categorical or {})[name] if v is not None]
        test = _test_for(name, "categorical", tests.get(name) or default_drift_test("categorical"))
        out.append(FeatureDrift(name, "categorical", test(reference, current)))
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
        out.append(FeatureDrift("embedding", "embedding", test(np.asarray(profile.embedding), embeddings)))
    return out


def _test_for(feature: str, kind: FeatureKind, name: str) -> DriftTest:
    test = get_drift_test(name)
    if test.kind != kind:
        raise ValueError(f"drift test {name!r} is for {test.kind} features; {feature} is {kind}")
    return test
