"""``maskops classify``: a table or JSON lines of probabilities; unreadable images reported, exit 1."""

from __future__ import annotations

import json

import cv2
import numpy as np
from typer.testing import CliRunner

from maskops.cli import app


def _write_images(tmp_path) -> list[str]:
    paths = []
    for name, bgr in (("red.png", (0, 0, 255)), ("blue.jpg", (255, 0, 0))):
        img = np.zeros((20, 30, 3), np.uint8)
        img[:] = bgr
        cv2.imwrite(str(tmp_path / name), img)
        paths.append(str(tmp_path / name))
    return paths


def test_classify_json(linear_model, tmp_path) -> None:
    red, blue = _write_images(tmp_path)
    result = CliRunner().invoke(app, ["classify", red, blue, "--model", str(linear_model), "--json"])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.output.splitlines()]
    assert [r["label"] for r in records] == ["with_mask", "mask_weared_incorrect"]
    for r in records:
        assert sum(r["probabilities"].values()) == 1.0 or abs(sum(r["probabilities"].values()) - 1) < 1e-5
        assert r["confidence"] == max(r["probabilities"].values())


def test_classify_table_and_unreadable_image(linear_model, tmp_path) -> None:
    red, _ = _write_images(tmp_path)
    broken = tmp_path / "broken.jpg"
    broken.write_text("not an image")
    result = CliRunner().invoke(
        app, ["classify", red, str(broken), str(tmp_path / "missing.png"), "--model", str(linear_model)]
    )
    assert result.exit_code == 1
    assert "with_mask" in result.output  # the readable image is still classified
    assert "broken.jpg: not an image" in result.output
    assert "missing.png" in result.output


def test_classify_with_a_model_that_is_not_onnx(tmp_path, facemask_spec) -> None:
    (red, _) = _write_images(tmp_path)
    fake = tmp_path / "fake.onnx"
    fake.write_text("hello")
    facemask_spec.save(fake.with_suffix(".json"))
    result = CliRunner().invoke(app, ["classify", red, "--model", str(fake)])
    assert result.exit_code == 2
    assert "not a loadable ONNX model" in result.output
