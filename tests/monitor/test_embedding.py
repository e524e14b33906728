"""The compact face embedding: PCA fit, card round trip, the classifier's output and the stored bytes."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from sqlalchemy import select
from torch import nn

from maskops.detect.pipeline import FaceMaskPipeline, PipelineConfig
from maskops.export.embedding import fit_embedding, record_projection
from maskops.export.onnx import export_onnx
from maskops.inference.classifier import ModelLoadError, OnnxClassifier
from maskops.inference.projection import (
    CARD_KEY,
    Projection,
    embedding_bytes,
    embedding_from_bytes,
    fit_projection,
)
from maskops.monitor.capture import build_record
from maskops.monitor.db import open_store
from maskops.monitor.schema import FaceRow
from maskops.monitor.store import write_records
from maskops.types import Detections, ModelSpec

NAMES = ["with_mask", "without_mask", "mask_weared_incorrect"]


class PoolNet(nn.Module):
    """conv (32 channels) -> ReLU -> global average pool -> linear: 32 pooled features."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 32, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(torch.relu(self.conv(x))).flatten(1))


class TwoFaces:
    """A detector finding the same two faces in every image."""

    def detect(self, image: np.ndarray) -> Detections:
        return Detections(
            xyxy=[[4, 4, 36, 40], [40, 8, 76, 44]],
            confidence=[0.9, 0.8],
            class_id=[-1, -1],
            face_score=[0.9, 0.8],
        )


def _images(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size=(int(rng.integers(20, 50)), 30, 3), dtype=np.uint8) for _ in range(n)]


@pytest.fixture(scope="module")
def spec() -> ModelSpec:
    return ModelSpec(task="facemask", class_names=NAMES, input_size=(24, 24), temperature=1.3)


@pytest.fixture(scope="module")
def model_files(tmp_path_factory: pytest.TempPathFactory, spec: ModelSpec) -> dict[str, Path]:
    """``embedded``: features output + projection; ``features_only``: no projection in the card;
    ``old``: no features output (an older export)."""
    torch.manual_seed(0)
    net = PoolNet().eval()
    root = tmp_path_factory.mktemp("emb")
    embedded = export_onnx(net, spec, root / "embedded.onnx")
    record_projection(fit_embedding(embedded, _images(60), fitted_on="val crops (test)"), embedded)
    return {
        "embedded": embedded,
        "features_only": export_onnx(net, spec, root / "features_only.onnx"),
        "old": export_onnx(net, spec, root / "old.onnx", features=False),
    }


def test_projection_fit_shape_dtype_and_axes() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, 40)) * np.linspace(5, 0.1, 40)  # decreasing variance per column
    p = fit_projection(x, 24, fitted_on="val")
    assert p.components.shape == (24, 40) and p.components.dtype == np.float32
    assert p.mean.shape == (40,) and p.dims == 24 and p.feature_dims == 40 and p.n == 200
    np.testing.assert_allclose(p.components @ p.components.T, np.eye(24), atol=1e-5)
    assert np.all(np.diff(p.explained_variance) <= 0)
    assert 0 < p.explained_variance_ratio.sum() <= 1
    z = p.project(x[:5])
    assert z.shape == (5, 24) and z.dtype == np.float16
    # centred projection: the mean row lands on the origin
    np.testing.assert_allclose(p.project(p.mean[None].astype(np.float64)), 0, atol=1e-3)
    # deterministic: a second fit gives the same axes (signs fixed)
    np.testing.assert_array_equal(fit_projection(x, 24).components, p.components)


@pytest.mark.parametrize(
    ("shape", "dims", "match"),
    [((10, 5, 2), 2, "2-D"), ((10, 5), 6, "dims must be in 1..5"), ((3, 5), 4, "dims must be in 1..3")],
)
def test_projection_fit_rejects_bad_input(shape, dims, match) -> None:
    with pytest.raises(ValueError, match=match):
        fit_projection(np.zeros(shape), dims)


def test_projection_card_round_trip(tmp_path: Path, spec: ModelSpec) -> None:
    p = fit_projection(np.random.default_rng(1).normal(size=(50, 30)), 24, fitted_on="val crops of m.csv")
    card = ModelSpec(**{**spec.to_dict(), "extra": {CARD_KEY: p.to_dict()}})
    loaded = ModelSpec.load(card.save(tmp_path / "m.json")).extra[CARD_KEY]
    assert loaded["dims"] == 24 and loaded["feature_dims"] == 30 and loaded["method"] == "pca"
    assert loaded["fitted_on"] == "val crops of m.csv" and loaded["n"] == 50
    assert len(loaded["mean"]) == 30 and len(loaded["components"]) == 24
    assert len(loaded["explained_variance"]) == 24
    back = Projection.from_dict(loaded)
    np.testing.assert_allclose(back.components, p.components, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(back.mean, p.mean, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="missing"):
        Projection.from_dict({"mean": [0.0]})


def test_embedding_bytes_round_trip() -> None:
    e = np.linspace(-3, 3, 24).astype(np.float16)
    data = embedding_bytes(e)
    assert len(data) == 48
    np.testing.assert_array_equal(embedding_from_bytes(data), e)


def test_classifier_returns_the_projected_float16_embedding(model_files) -> None:
    clf = OnnxClassifier(model_files["embedded"])
    assert clf.has_features and clf.embedding_dims == 24
    images = _images(5, seed=9)
    proba, emb = clf.predict_with_embedding(images, batch_size=2)
    np.testing.assert_allclose(proba, clf.predict_proba(images), atol=1e-6)
    assert emb is not None and emb.shape == (5, 24) and emb.dtype == np.float16
    assert clf.projection is not None
    np.testing.assert_array_equal(emb, clf.projection.project(clf.predict_features(images)))
    proba0, emb0 = clf.predict_with_embedding([])
    assert proba0.shape == (0, 3) and emb0 is not None and emb0.shape == (0, 24)


@pytest.mark.parametrize("name", ["features_only", "old"])
def test_models_without_a_projection_or_features_give_no_embedding(model_files, name) -> None:
    clf = OnnxClassifier(model_files[name])
    assert clf.embedding_dims is None
    assert clf.has_features == (name == "features_only")
    proba, emb = clf.predict_with_embedding(_images(3))
    assert emb is None and proba.shape == (3, 3)
    if name == "old":
        with pytest.raises(ValueError, match="no 'features' output"):
            clf.predict_features(_images(1))


def test_an_old_model_with_a_new_card_warns_and_gives_none(model_files, tmp_path, caplog) -> None:
    old = tmp_path / "old.onnx"
    old.write_bytes(model_files["old"].read_bytes())
    card = ModelSpec.load(ModelSpec.card_path(model_files["embedded"]))
    card.save(ModelSpec.card_path(old))
    with caplog.at_level(logging.WARNING):
        clf = OnnxClassifier(old)
    assert clf.projection is None and "no 'features' output" in caplog.text


def test_a_projection_of_another_width_is_a_load_error(model_files, tmp_path) -> None:
    path = tmp_path / "m.onnx"
    path.write_bytes(model_files["features_only"].read_bytes())
    card = ModelSpec.load(ModelSpec.card_path(model_files["features_only"]))
    card.extra[CARD_KEY] = fit_projection(np.random.default_rng(0).normal(size=(30, 20)), 4).to_dict()
    card.save(ModelSpec.card_path(path))
    with pytest.raises(ModelLoadError, match="projects 20 features"):
        OnnxClassifier(path)


def _stored_embeddings(model: Path, tmp_path: Path) -> tuple[list[bytes | None], np.ndarray | None]:
    pipe = FaceMaskPipeline(OnnxClassifier(model), TwoFaces(), PipelineConfig(uncertain=False))  # type: ignore[arg-type]
    result = pipe(np.random.default_rng(5).integers(0, 256, size=(60, 80, 3), dtype=np.uint8))
    record = build_record(result, NAMES, request_id="r1", source="api", width=80, height=60, latency_ms=3.0)
    engine = open_store(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        write_records(engine, [record])
        with engine.connect() as conn:
            rows = conn.execute(select(FaceRow.embedding).order_by(FaceRow.face_index)).scalars().all()
    finally:
        engine.dispose()
    return list(rows), result.embeddings


def test_a_recorded_request_stores_a_24_value_float16_embedding(model_files, tmp_path) -> None:
    rows, embeddings = _stored_embeddings(model_files["embedded"], tmp_path)
    assert embeddings is not None and len(rows) == 2
    for i, data in enumerate(rows):
        assert data is not None and len(data) == 24 * 2
        values = embedding_from_bytes(data)
        assert values.dtype == np.float16 and values.shape == (24,)
        np.testing.assert_array_equal(values, embeddings[i])


def test_a_model_without_the_output_serves_and_records_null(model_files, tmp_path) -> None:
    rows, embeddings = _stored_embeddings(model_files["old"], tmp_path)
    assert embeddings is None
    assert rows == [None, None]


def test_the_spool_json_keeps_the_embedding(model_files) -> None:
    from maskops.monitor.records import PredictionRecord

    pipe = FaceMaskPipeline(OnnxClassifier(model_files["embedded"]), TwoFaces(), PipelineConfig())  # type: ignore[arg-type]
    result = pipe(np.full((60, 80, 3), 128, np.uint8))
    record = build_record(result, NAMES, request_id="r2", source="api", width=80, height=60, latency_ms=1)
    back = PredictionRecord.from_json(record.to_json())
    assert [f.embedding for f in back.faces] == [f.embedding for f in record.faces]
    assert all(f.embedding is not None for f in back.faces)
    values = back.faces[0].embedding_values()
    assert values is not None and values.dtype == np.float16
    assert result.embeddings is not None
    np.testing.assert_array_equal(values, result.embeddings[0])
