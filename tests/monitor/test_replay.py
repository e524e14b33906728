from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from maskops.cli import app
from maskops.monitor.db import open_store
from maskops.monitor.features import image_quality
from maskops.monitor.replay import apply_transforms, image_files, parse_transforms, replay
from maskops.monitor.schema import RequestRow
from maskops.types import ModelSpec


def gradient(width: int = 96, height: int = 64) -> np.ndarray:
    x = np.linspace(40, 220, width).astype(np.uint8)
    return np.dstack([np.tile(x, (height, 1))] * 3)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    d = tmp_path / "images"
    d.mkdir()
    for i in range(3):
        cv2.imwrite(str(d / f"{i}.jpg"), gradient())
    return d


@pytest.mark.parametrize(
    "text, expected, error",
    [
        ("darken=0.5,blur=2", [("darken", 0.5), ("blur", 2.0)], None),
        ("noise=8|scale=0.5", [("noise", 8.0), ("scale", 0.5)], None),
        ("desaturate", [("desaturate", 1.0)], None),
        (None, [], None),
        ("fog=1", None, "unknown transform 'fog'; choose from darken"),
        ("blur=much", None, "not a number"),
    ],
)
def test_parse_transforms(text, expected, error) -> None:
    if error:
        with pytest.raises(ValueError, match=error):
            parse_transforms(text)
    else:
        assert parse_transforms(text) == expected


def test_transforms_change_the_quality_features() -> None:
    image = gradient()
    base = image_quality(image)
    assert image_quality(apply_transforms(image, [("darken", 0.5)])).brightness == pytest.approx(
        base.brightness / 2, abs=0.01
    )
    assert apply_transforms(image, [("scale", 0.5)]).shape == (32, 48, 3)
    noisy = apply_transforms(image, [("noise", 20.0)])
    assert image_quality(noisy).sharpness > base.sharpness


def test_replay_rate_limit_and_loop(folder: Path, tmp_path: Path) -> None:
    (folder / "broken.jpg").write_bytes(b"not an image at all")
    sent: list[str] = []
    waits: list[float] = []
    files = image_files(folder)
    assert len(files) == 4
    now = [0.0]  # a fake clock that only the fake sleep advances: pacing does not depend on speed
    summary = replay(
        files,
        lambda data, name: sent.append(name) or 200,
        rate=1000.0,
        limit=5,
        loop=True,
        sleep=lambda s: (waits.append(s), now.__setitem__(0, now[0] + s)),
        clock=lambda: now[0],
    )
    assert summary.sent == summary.ok == 5
    assert sent == ["0.jpg", "1.jpg", "2.jpg", "0.jpg", "1.jpg"]
    assert len(summary.unreadable) == 1  # broken.jpg (the second pass stops at the limit before it)
    assert waits == pytest.approx([0.001] * 4)  # paced at 1 ms per image after the first


def test_replay_without_readable_images_stops(tmp_path: Path) -> None:
    bad = tmp_path / "x.jpg"
    bad.write_bytes(b"junk")
    assert replay([bad], lambda d, n: 200, loop=True).sent == 0


def test_replay_command_in_process(
    folder: Path, tmp_path: Path, linear_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    models = tmp_path / "models"
    models.mkdir()
    shutil.copy(linear_model, models / "facemask.onnx")
    shutil.copy(ModelSpec.card_path(linear_model), models / "facemask.json")
    work = tmp_path / "work"
    monkeypatch.setenv("MASKOPS_MODELS_DIR", str(models))
    monkeypatch.setenv("MASKOPS_WORK_DIR", str(work))
    monkeypatch.setenv("MASKOPS_WARM_UP", "false")
    monkeypatch.delenv("MASKOPS_DATABASE_URL", raising=False)
    out = CliRunner().invoke(
        app, ["monitor", "replay", str(folder), "--transform", "darken=0.5", "--site", "sim", "--limit", "2"]
    )
    assert out.exit_code == 0, out.output
    assert "sent 2 image(s)" in out.output
    engine = open_store(f"sqlite:///{work / 'maskops.db'}")
    with engine.connect() as conn:
        stored = conn.execute(select(RequestRow)).all()
    engine.dispose()
    assert len(stored) == 2
    assert {r.site for r in stored} == {"sim"}
    assert all(r.brightness < image_quality(gradient()).brightness * 0.6 for r in stored)


def test_replay_command_errors(folder: Path) -> None:
    out = CliRunner().invoke(app, ["monitor", "replay", str(folder), "--transform", "fog=2"])
    assert out.exit_code == 2 and "unknown transform" in out.output
    out = CliRunner().invoke(
        app, ["monitor", "replay", str(folder), "--url", "http://127.0.0.1:9", "--limit", "1"]
    )
    assert out.exit_code == 1 and "statuses 0: 1" in out.output
