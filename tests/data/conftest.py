"""Fixtures for the data-stage tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from datagen import pattern_image, write_image


@pytest.fixture
def make_image() -> Callable[..., Path]:
    def _make(path: Path, seed: int = 0, size: tuple[int, int] = (96, 128), ext: str = ".png") -> Path:
        return write_image(path, pattern_image(seed, size), ext)

    return _make


@pytest.fixture(autouse=True)
def _no_progress(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MASKOPS_NO_PROGRESS", "1")
