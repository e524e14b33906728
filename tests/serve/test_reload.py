"""/v1/models/reload: an atomic swap that keeps requests in flight on the models they started with."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from serve_helpers import assert_error

from maskops.serve.service import MaskService, ModelSet
from maskops.types import ModelSpec


def _version(client: TestClient) -> str:
    return str(client.get("/model-info").json()["version"])


def _rewrite_face_model(models_dir: Path, write: Callable[..., Path], spec: ModelSpec) -> None:
    w = np.array([[0.0, 0.0, 4.0], [0.0, 4.0, 0.0], [4.0, 0.0, 0.0]], np.float32)  # different weights
    write(models_dir / "facemask.onnx", spec, w, np.zeros(3, np.float32))


def test_reload_swaps_to_the_new_files(
    client: TestClient, models_dir: Path, write_linear_onnx: Callable[..., Path], facemask_spec: ModelSpec
) -> None:
    before = _version(client)
    _rewrite_face_model(models_dir, write_linear_onnx, facemask_spec)
    r = client.post("/v1/models/reload")
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["previous_generation"], body["generation"]) == (1, 2)
    assert {m["name"] for m in body["models"]} == {"facemask", "malaria"}
    after = _version(client)
    assert after != before
    assert client.get("/v1/stats").json()["model_generation"] == 2


def test_reload_without_a_face_model_keeps_the_current_set(client: TestClient, models_dir: Path) -> None:
    before = _version(client)
    (models_dir / "facemask.onnx").unlink()
    assert_error(client.post("/v1/models/reload"), 409, "reload_failed")
    assert client.get("/ready").status_code == 200
    assert _version(client) == before


def test_reload_from_the_registry_uses_its_resolver(
    client: TestClient,
    models_dir: Path,
    tmp_path: Path,
    write_linear_onnx: Callable[..., Path],
    facemask_spec: ModelSpec,
) -> None:
    champion_dir = tmp_path / "champion"
    champion_dir.mkdir()
    _rewrite_face_model(champion_dir, write_linear_onnx, facemask_spec)
    service: MaskService = client.app.state.service  # type: ignore[attr-defined]
    service.loader.resolvers["registry"] = lambda s: {"facemask": champion_dir / "facemask.onnx"}
    r = client.post("/v1/models/reload", params={"source": "registry"})
    assert r.status_code == 200, r.text
    cards = client.get("/v1/models").json()["models"]
    assert [(m["name"], m["source"]) for m in cards] == [("facemask", "registry")]
    assert_error(client.post("/v1/models/reload", params={"source": "ftp"}), 422, "validation_error")


def test_request_in_flight_finishes_on_the_old_models(
    client: TestClient,
    models_dir: Path,
    plain_jpeg: bytes,
    write_linear_onnx: Callable[..., Path],
    facemask_spec: ModelSpec,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before = _version(client)
    entered, release = threading.Event(), threading.Event()
    seen: list[int] = []
    original = MaskService.detect_sync

    def slow(self: MaskService, models: ModelSet, *args: object, **kwargs: object) -> object:
        seen.append(models.generation)
        if len(seen) == 1:
            entered.set()
            release.wait(10)
        return original(self, models, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(MaskService, "detect_sync", slow)
    result: dict[str, object] = {}

    def call() -> None:
        result["r"] = client.post("/v1/detect", files={"file": ("a.jpg", plain_jpeg)})

    t = threading.Thread(target=call)
    t.start()
    try:
        assert entered.wait(10)
        _rewrite_face_model(models_dir, write_linear_onnx, facemask_spec)
        assert client.post("/v1/models/reload").status_code == 200
    finally:
        release.set()
        t.join(10)
    old = result["r"]
    assert old.status_code == 200  # type: ignore[attr-defined]
    assert old.json()["model"]["version"] == before  # type: ignore[attr-defined]
    new = client.post("/v1/detect", files={"file": ("a.jpg", plain_jpeg)}).json()
    assert new["model"]["version"] != before
    assert seen == [1, 2]
