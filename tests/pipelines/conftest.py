"""Fixtures of the pipeline tests: the toy task's data, work folder and MLflow store."""

from __future__ import annotations

from pathlib import Path

import pytest
from pipeline_helpers import write_dataset, write_task


@pytest.fixture
def toy_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Data, work folder and MLflow store of the toy task in ``tmp_path``; returns the task file."""
    write_dataset(tmp_path / "datasets" / "toy-folder")
    monkeypatch.setenv("MASKOPS_DATA_DIR", str(tmp_path / "datasets"))
    monkeypatch.setenv("MASKOPS_WORK_DIR", str(tmp_path / "work"))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("MASKOPS_NO_PROGRESS", "1")
    return write_task(tmp_path / "toy.yaml")
