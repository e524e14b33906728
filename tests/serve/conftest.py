"""Serving fixtures: a models dir holding the tiny linear face classifier, an app client, images."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from serve_helpers import gradient, jpeg_bytes

from maskops.serve.app import create_app
from maskops.serve.settings import ServeSettings
from maskops.types import ModelSpec

FACE_PHOTO = "maksssksksss123.jpg"  # two annotated faces, both found by YuNet


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Browser tests skipped for want of chromium are easy to miss among the dots: say it loudly."""
    skipped = [
        r
        for r in terminalreporter.stats.get("skipped", [])
        if "test_browser.py" in r.nodeid and "chromium not installed" in str(r.longrepr)
    ]
    if not skipped:
        return
    terminalreporter.write_sep(
        "!", f"{len(skipped)} BROWSER TESTS SKIPPED: chromium is not installed", red=True
    )
    terminalreporter.write_line(
        "The web app was not tested in a browser. Install it with `apt-get install -y chromium` "
        "(.ci/run does, and fails when a browser test is skipped there).",
        red=True,
        bold=True,
    )


@pytest.fixture(autouse=True)
def _no_real_registry(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """A reload from the registry in a test must never read the repository's mlflow.db."""
    uri = f"sqlite:///{tmp_path_factory.getbasetemp() / 'serve-mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)


@pytest.fixture
def models_dir(tmp_path: Path, linear_model: Path, write_linear_onnx: Callable[..., Path]) -> Path:
    """``facemask.onnx`` (the 3-class linear model) and ``malaria.onnx`` (a 2-class one), with cards."""
    d = tmp_path / "models"
    d.mkdir()
    shutil.copy(linear_model, d / "facemask.onnx")
    shutil.copy(ModelSpec.card_path(linear_model), d / "facemask.json")
    malaria = ModelSpec(task="malaria", class_names=["Parasitized", "Uninfected"], input_size=(16, 16))
    w = np.array([[4.0, 0.0, 0.0], [0.0, 0.0, 4.0]], np.float32)
    write_linear_onnx(d / "malaria.onnx", malaria, w, np.zeros(2, np.float32))
    return d


@pytest.fixture
def make_settings(models_dir: Path, tmp_path: Path) -> Callable[..., ServeSettings]:
    def make(**overrides: object) -> ServeSettings:
        values: dict[str, object] = {
            "models_dir": models_dir,
            "work_dir": tmp_path / "work",
            "workers": 2,
            "log_format": "text",
            "warm_up": False,
        }
        values.update(overrides)
        return ServeSettings(**values)  # type: ignore[arg-type]

    return make


@pytest.fixture
def make_client(make_settings: Callable[..., ServeSettings]) -> Iterator[Callable[..., TestClient]]:
    clients: list[TestClient] = []

    def make(**overrides: object) -> TestClient:
        client = TestClient(create_app(make_settings(**overrides)), raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for c in clients:
        c.__exit__(None, None, None)


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client()


@pytest.fixture
def plain_jpeg() -> bytes:
    """A 64x48 gradient: a valid image with no face in it."""
    return jpeg_bytes(gradient())


@pytest.fixture
def face_photo(data_dir: Path) -> bytes:
    """A real photo with two faces (skips without the shared dataset)."""
    path = data_dir / "facemask-voc" / "images" / FACE_PHOTO
    if not path.is_file():
        pytest.skip(f"face photo not found at {path} (set MASKOPS_DATA_DIR to the shared datasets)")
    return path.read_bytes()
