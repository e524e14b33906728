"""``maskops export`` end to end on a tiny model: ONNX + card, parity on val images, int8 report."""

from __future__ import annotations

import json
import sys
import types
from dataclasses import dataclass

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

import maskops.commands.export as export_cmd
from maskops.cli import app
from maskops.inference.classifier import OnnxClassifier
from maskops.types import ModelSpec


@dataclass(frozen=True)
class Row:
    path: str
    label: str
    split: str


@pytest.fixture
def fake_training(monkeypatch, tmp_path, tiny_model, spec):
    """A checkpoint loader returning the tiny model, and a manifest of generated val/train crops."""
    module = types.ModuleType("maskops.train.checkpoint")
    module.load_model = lambda path: (tiny_model, spec)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "maskops.train.checkpoint", module)
    rng = np.random.default_rng(5)
    rows = []
    for i in range(30):
        path = tmp_path / "crops" / f"{i}.png"
        path.parent.mkdir(exist_ok=True)
        cv2.imwrite(str(path), rng.integers(0, 256, size=(20 + i, 25, 3), dtype=np.uint8))
        rows.append(Row(str(path), spec.class_names[i % 3], "val" if i < 24 else "train"))
    monkeypatch.setattr("maskops.data.manifest.read_manifest", lambda manifest: rows)
    checkpoint = tmp_path / "best.pt"
    checkpoint.write_bytes(b"not used by the fake loader")
    return checkpoint, tmp_path / "manifest.csv"


def test_export_with_parity_and_int8(fake_training, tmp_path) -> None:
    checkpoint, manifest = fake_training
    out = tmp_path / "models" / "facemask.onnx"
    args = ["export", "--checkpoint", str(checkpoint), "--out", str(out), "--parity-manifest", str(manifest)]
    result = CliRunner().invoke(app, [*args, "--parity-n", "10", "--int8", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["parity"]["n"] == 10 and report["parity"]["passed"]
    assert report["int8"]["n"] == 24  # accuracy change measured on every val image
    assert report["int8"]["accuracy_change"] == pytest.approx(
        report["int8"]["int8_accuracy"] - report["int8"]["fp32_accuracy"]
    )
    assert OnnxClassifier(out).predict_proba([np.zeros((5, 5, 3), np.uint8)]).shape == (1, 3)
    int8 = tmp_path / "models" / "facemask_int8.onnx"
    assert ModelSpec.load(ModelSpec.card_path(int8)).extra["quantized"] == "int8"


def test_export_prints_parity_figures(fake_training, tmp_path) -> None:
    checkpoint, manifest = fake_training
    out = tmp_path / "m.onnx"
    result = CliRunner().invoke(
        app,
        ["export", "--checkpoint", str(checkpoint), "--out", str(out), "--parity-manifest", str(manifest)],
    )
    assert result.exit_code == 0, result.output
    assert "parity on 24 val images" in result.output and "passed" in result.output


def test_export_fails_when_parity_fails(fake_training, tmp_path, monkeypatch, tiny_model) -> None:
    import copy

    import torch

    import maskops.export.onnx as onnx_mod

    checkpoint, manifest = fake_training
    # Parity is checked against another model than the exported one: the command must fail.
    broken = copy.deepcopy(tiny_model)
    with torch.no_grad():
        broken.fc.bias += torch.tensor([5.0, 0.0, -5.0])
    original = onnx_mod.check_parity

    def mismatched(model, *args, **kwargs):
        return original(broken, *args, **kwargs)

    monkeypatch.setattr(onnx_mod, "check_parity", mismatched)
    result = CliRunner().invoke(
        app,
        [
            "export",
            "--checkpoint",
            str(checkpoint),
            "--out",
            str(tmp_path / "m.onnx"),
            "--parity-manifest",
            str(manifest),
        ],
    )
    assert result.exit_code == 1
    assert "parity check failed" in result.output


def test_int8_needs_a_manifest(fake_training, tmp_path) -> None:
    checkpoint, _ = fake_training
    result = CliRunner().invoke(
        app, ["export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "m.onnx"), "--int8"]
    )
    assert result.exit_code == 2
    assert "--int8 needs --parity-manifest" in result.output


def test_validation_sample_covers_every_class(fake_training, spec) -> None:
    _, manifest = fake_training
    images, labels = export_cmd.validation_sample(manifest, spec.class_names, 6)
    assert len(images) == 6
    assert sorted(labels.tolist()) == [0, 0, 1, 1, 2, 2]
    with pytest.raises(ValueError, match=r"labels \['with_mask'\] are not classes"):
        export_cmd.validation_sample(manifest, ["a", "without_mask", "mask_weared_incorrect"], 3)


def test_unreadable_checkpoint_is_a_clear_error(monkeypatch, tmp_path) -> None:
    def load_model(path):
        raise ValueError(f"{path}: not a maskops checkpoint (missing ['spec'])")

    module = types.ModuleType("maskops.train.checkpoint")
    module.load_model = load_model  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "maskops.train.checkpoint", module)
    checkpoint = tmp_path / "junk.pt"
    checkpoint.write_bytes(b"junk")
    out = tmp_path / "m.onnx"
    result = CliRunner().invoke(app, ["export", "--checkpoint", str(checkpoint), "--out", str(out)])
    assert result.exit_code == 2
    assert "junk.pt: not a maskops checkpoint" in result.output
    assert not out.exists()


def test_export_fits_the_embedding_projection_into_both_cards(fake_training, tmp_path) -> None:
    checkpoint, manifest = fake_training
    out = tmp_path / "e" / "facemask.onnx"
    args = ["export", "--checkpoint", str(checkpoint), "--out", str(out), "--parity-manifest", str(manifest)]
    result = CliRunner().invoke(app, [*args, "--int8", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["embedding_dims"] == 8  # the tiny model's 8 pooled features
    for path in (out, out.with_name("facemask_int8.onnx")):
        clf = OnnxClassifier(path)
        assert clf.embedding_dims == 8
        _, emb = clf.predict_with_embedding([np.zeros((9, 9, 3), np.uint8)])
        assert emb is not None and emb.shape == (1, 8)
