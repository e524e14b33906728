"""The compact face embedding: a PCA projection of the classifier's pooled features (numpy only).

The classifier exports its pooled features (the input of its classification head) as a second ONNX
output, ``features``. At release a ``Projection`` is fitted on the features of the validation crops
and recorded in the model card (``extra["embedding"]``); serving applies it (one matmul) and stores
the result as ``EMBEDDING_DTYPE`` bytes per face, the input of the embedding drift test.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

CARD_KEY = "embedding"
EMBEDDING_DIMS = 24
EMBEDDING_DTYPE = np.float16
FEATURES_OUTPUT = "features"
# components and mean are written with this many significant digits: far finer than the float16
# embedding they produce (11 bits), and it keeps the card text about half the size of full floats
CARD_DIGITS = 6


@dataclass(frozen=True)
class Projection:
    """``embedding = (features - mean) @ components.T``, as ``EMBEDDING_DTYPE``.

    Attributes:
        mean: (d,) mean of the fitted features.
        components: (k, d) orthonormal principal axes, largest variance first.
        explained_variance: (k,) variance of the fitted features along each axis.
        explained_variance_ratio: (k,) share of the features' total variance per axis.
        n: rows the projection was fitted on.
        fitted_on: what those rows were (e.g. ``val crops of <manifest>``).
    """

    mean: np.ndarray
    components: np.ndarray
    explained_variance: np.ndarray
    explained_variance_ratio: np.ndarray
    n: int
    fitted_on: str = ""

    def __post_init__(self) -> None:
        mean = np.asarray(self.mean, np.float32).reshape(-1)
        comp = np.asarray(self.components, np.float32)
        if comp.ndim != 2 or comp.shape[1] != mean.shape[0]:
            raise ValueError(
                f"projection components must be (dims, {mean.shape[0]}) for a mean of "
                f"{mean.shape[0]} features, got shape {comp.shape}"
            )
        object.__setattr__(self, "mean", mean)
        object.__setattr__(self, "components", comp)
        object.__setattr__(self, "explained_variance", np.asarray(self.explained_variance, np.float64))
        object.__setattr__(
            self, "explained_variance_ratio", np.asarray(self.explained_variance_ratio, np.float64)
        )

    @property
    def dims(self) -> int:
        return int(self.components.shape[0])

    @property
    def feature_dims(self) -> int:
        return int(self.components.shape[1])

    def project(self, features: np.ndarray) -> np.ndarray:
        """(n, d) pooled features -> (n, dims) ``EMBEDDING_DTYPE`` embeddings.

        Raises:
            ValueError: features with another width than the projection's.
        """
        f = np.asarray(features, np.float32)
        if f.ndim != 2 or f.shape[1] != self.feature_dims:
            raise ValueError(f"features must be (n, {self.feature_dims}), got shape {f.shape}")
        return ((f - self.mean) @ self.components.T).astype(EMBEDDING_DTYPE)

    def to_dict(self) -> dict[str, Any]:
        """The card form: plain lists (``CARD_DIGITS`` significant digits) and the fit's figures."""
        return {
            "output": FEATURES_OUTPUT,
            "method": "pca",
            "dims": self.dims,
            "feature_dims": self.feature_dims,
            "dtype": np.dtype(EMBEDDING_DTYPE).name,
            "n": int(self.n),
            "fitted_on": self.fitted_on,
            "explained_variance": _rounded(self.explained_variance),
            "explained_variance_ratio": _rounded(self.explained_variance_ratio),
            "explained_variance_ratio_total": float(np.sum(self.explained_variance_ratio)),
            "mean": _rounded(self.mean),
            "components": [_rounded(row) for row in self.components],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Projection:
        """Read ``to_dict`` output (the card's ``extra["embedding"]``).

        Raises:
            ValueError: a missing field or arrays of inconsistent shapes (the message names them).
        """
        missing = [k for k in ("mean", "components") if k not in data]
        if missing:
            raise ValueError(f"embedding projection is missing {missing}")
        if data.get("method", "pca") != "pca":
            raise ValueError(f"embedding projection method {data.get('method')!r}; this maskops reads 'pca'")
        try:
            return cls(
                mean=np.asarray(data["mean"], np.float32),
                components=np.asarray(data["components"], np.float32),
                explained_variance=np.asarray(data.get("explained_variance", []), np.float64),
                explained_variance_ratio=np.asarray(data.get("explained_variance_ratio", []), np.float64),
                n=int(data.get("n", 0)),
                fitted_on=str(data.get("fitted_on", "")),
            )
        except (TypeError, ValueError) as exc:
            raise ValueError(f"malformed embedding projection: {exc}") from None


def _rounded(values: np.ndarray) -> list[float]:
    return [float(f"{v:.{CARD_DIGITS}g}") for v in np.asarray(values, np.float64).reshape(-1)]


def fit_projection(features: np.ndarray, dims: int = EMBEDDING_DIMS, *, fitted_on: str = "") -> Projection:
    """PCA of ``features`` (rows are samples) by SVD of the centred matrix.

    Each axis's sign is fixed so that its largest-magnitude coefficient is positive, which makes the
    fit deterministic across runs and platforms.

    Args:
        features: (n, d) pooled features.
        dims: axes kept; at most ``min(n, d)``.
        fitted_on: what the rows are (recorded in the card).

    Raises:
        ValueError: not 2-D, non-finite values, ``dims`` < 1 or more axes than ``min(n, d)``.
    """
    x = np.asarray(features, np.float64)
    if x.ndim != 2:
        raise ValueError(f"features must be 2-D (rows, dims), got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError("features contain NaN or infinite values")
    n, d = x.shape
    if dims < 1 or dims > min(n, d):
        raise ValueError(f"dims must be in 1..{min(n, d)} for {n} rows of {d} features, got {dims}")
    mean = x.mean(axis=0)
    _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
    vt = vt[:dims]
    signs = np.sign(vt[np.arange(dims), np.abs(vt).argmax(axis=1)])
    vt = vt * np.where(signs == 0, 1.0, signs)[:, None]
    variance = s**2 / max(n - 1, 1)
    total = float(variance.sum())
    ratio = variance[:dims] / total if total > 0 else np.zeros(dims)
    return Projection(mean, vt, variance[:dims], ratio, n, fitted_on)


def embedding_bytes(embedding: np.ndarray) -> bytes:
    """One face's embedding as little-endian ``EMBEDDING_DTYPE`` bytes (what the store keeps)."""
    return np.asarray(embedding, dtype=np.dtype(EMBEDDING_DTYPE).newbyteorder("<")).tobytes()


def embedding_from_bytes(data: bytes) -> np.ndarray:
    """The inverse of ``embedding_bytes``: a 1-D ``EMBEDDING_DTYPE`` array."""
    return np.frombuffer(data, dtype=np.dtype(EMBEDDING_DTYPE).newbyteorder("<")).astype(EMBEDDING_DTYPE)
