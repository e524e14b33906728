"""``maskops detect`` and ``maskops watch`` with ``--log-to``: every image or frame in the store."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from maskops.cli import app
from maskops.monitor.db import open_store
from maskops.monitor.schema import RequestRow


def gradient(width: int = 96, height: int = 64, shift: int = 0) -> np.ndarray:
    x = (np.linspace(0, 255, width) + shift).astype(np.uint8)
    return np.dstack([np.tile(x, (height, 1))] * 3)


def rows(url: str) -> list:
    engine = open_store(url)
    try:
        with engine.connect() as conn:
            return conn.execute(select(RequestRow).order_by(RequestRow.request_id)).all()
    finally:
        engine.dispose()


def test_detect_log_to(tmp_path: Path, linear_model: Path, store_url: str) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"{i}.jpg"), gradient(shift=10 * i))
    out = CliRunner().invoke(
        app, ["detect", str(folder), "--model", str(linear_model), "--log-to", store_url, "--site", "lobby"]
    )
    assert out.exit_code == 0, out.output
    stored = rows(store_url)
    assert len(stored) == 3
    assert {r.source for r in stored} == {"detect"}
    assert {r.site for r in stored} == {"lobby"}
    assert {(r.width, r.height) for r in stored} == {(96, 64)}
    assert stored[0].model_name == linear_model.stem and len(stored[0].model_version) == 12
    assert len({r.request_id for r in stored}) == 3


def test_watch_log_to(tmp_path: Path, linear_model: Path, store_url: str) -> None:
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (96, 64))
    for i in range(5):
        writer.write(gradient(shift=i))
    writer.release()
    out = CliRunner().invoke(app, ["watch", str(video), "--model", str(linear_model), "--log-to", store_url])
    assert out.exit_code == 0, out.output
    stored = rows(store_url)
    assert len(stored) == 5
    assert {r.source for r in stored} == {"watch"}
    assert all(r.brightness is not None for r in stored)


@pytest.mark.parametrize("command", ["detect", "watch"])
def test_bad_log_to_url_exits_2(command: str, tmp_path: Path, linear_model: Path) -> None:
    out = CliRunner().invoke(
        app, [command, str(tmp_path), "--model", str(linear_model), "--log-to", "nonsense"]
    )
    assert out.exit_code == 2
    assert "--log-to" in out.output
