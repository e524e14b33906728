"""Shared fixtures: small generated images, a ``make_detections`` builder, the shared data root."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from maskops.types import Detections

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("MASKOPS_SHARED_DIR", REPO_ROOT.parent / "shared"))
DATA_DIR = Path(os.environ.get("MASKOPS_DATA_DIR", SHARED / "datasets"))


def make_detections(
    xyxy: Sequence[Sequence[float]], class_id: Sequence[int], confidence: Sequence[float] | None = None
) -> Detections:
    return Detections.from_lists(xyxy, class_id, confidence)


@pytest.fixture
def tiny_image() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, size=(48, 64, 3), dtype=np.uint8)


@pytest.fixture
def data_dir() -> Path:
    return DATA_DIR


def require_dataset(name: str) -> Path:
    """Path of a dataset under the shared data root, or skip the test with the reason."""
    path = DATA_DIR / name
    if not path.is_dir():
        pytest.skip(f"dataset {name!r} not found at {path} (set MASKOPS_DATA_DIR to the shared datasets)")
    return path


@pytest.fixture(autouse=True)
def _isolated_work_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep tests from writing into the repository's work/ or mlflow.db."""
    monkeypatch.setenv("MASKOPS_WORK_DIR", str(tmp_path_factory.getbasetemp() / "work"))
