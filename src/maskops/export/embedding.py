"""Fitting the compact face embedding of an exported classifier and recording it in its card(s).

The projection (``maskops.inference.projection``) is fitted on the ``features`` output of the fp32
file, which equals torch's pooled features (the export's parity), and written to the card of every
file given: the fp32 file and its int8 / fp16 forms, whose ``features`` output is close to fp32's.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from maskops.inference.projection import CARD_KEY, EMBEDDING_DIMS, Projection, fit_projection
from maskops.types import ModelSpec

logger = logging.getLogger(__name__)


def fit_embedding(
    onnx_path: str | Path,
    images_bgr: Sequence[np.ndarray],
    *,
    dims: int = EMBEDDING_DIMS,
    fitted_on: str = "",
    batch_size: int = 64,
) -> Projection:
    """PCA of the pooled features the model computes on ``images_bgr``.

    With fewer than ``dims + 1`` images (or fewer features than ``dims``) fewer axes are fitted,
    with a warning: ``n`` points span at most ``n - 1`` centred directions.

    Raises:
        ValueError: the model has no ``features`` output, or fewer than 2 images.
    """
    from maskops.inference.classifier import OnnxClassifier

    features = OnnxClassifier(onnx_path).predict_features(images_bgr, batch_size)
    k = min(dims, features.shape[0] - 1, features.shape[1])
    if k < 1:
        raise ValueError(f"an embedding projection needs at least 2 images, got {features.shape[0]}")
    if k < dims:
        logger.warning(
            "embedding projection with %d dims instead of %d: %d images of %d features",
            k,
            dims,
            features.shape[0],
            features.shape[1],
        )
    projection = fit_projection(features, k, fitted_on=fitted_on)
    logger.info(
        "embedding projection: %d -> %d dims on %d images (%s), %.1f%% of the variance",
        projection.feature_dims,
        projection.dims,
        projection.n,
        fitted_on or "unnamed",
        100 * float(projection.explained_variance_ratio.sum()),
    )
    return projection


def record_projection(projection: Projection, *onnx_paths: str | Path) -> None:
    """Write ``projection`` into the card (``extra["embedding"]``) beside each of ``onnx_paths``."""
    data = projection.to_dict()
    for path in onnx_paths:
        card_path = ModelSpec.card_path(Path(path))
        card = ModelSpec.load(card_path)
        card.extra = {**card.extra, CARD_KEY: data}
        card.save(card_path)
