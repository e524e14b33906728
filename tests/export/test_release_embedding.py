"""The release's embedding projection and reference profile (``export_release``), and re-releasing a
finished run's checkpoint into another folder (``release_checkpoint``), without MLflow."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
import torch
import yaml

from maskops.config import TaskConfig
from maskops.inference.classifier import OnnxClassifier
from maskops.inference.projection import CARD_KEY
from maskops.models import create_model
from maskops.monitor.reference import ReferenceProfile
from maskops.train.checkpoint import save_checkpoint
from maskops.train.release import export_release, release_checkpoint
from maskops.types import ModelSpec

CLASSES = ["red", "green", "blue"]


def _manifest(root: Path, per_split: dict[str, int]) -> Path:
    rng = np.random.default_rng(0)
    (root / "img").mkdir(parents=True)
    rows = []
    for split, n in per_split.items():
        for k in range(n):
            label = CLASSES[k % 3]
            img = rng.integers(0, 90, size=(20, 20, 3), dtype=np.uint8)
            img[5:15, 5:15, 2 - CLASSES.index(label)] = 230
            path = root / "img" / f"{split}{k}.png"
            cv2.imwrite(str(path), img)
            rows.append(
                {
                    "path": str(path),
                    "sha256": f"{split}{k}",
                    "label": label,
                    "split": split,
                    "group": f"{split}{k}",
                    "source": "toy",
                    "parent": "",
                    "box": "",
                }
            )
    manifest = root / "manifest.csv"
    with manifest.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return manifest


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _manifest(tmp_path_factory.mktemp("data"), {"val": 40, "test": 9})


@pytest.fixture(scope="module")
def model_and_spec() -> tuple[torch.nn.Module, ModelSpec]:
    torch.manual_seed(0)
    model = create_model("tiny_cnn", num_classes=3, width=8).eval()  # 32 pooled features
    spec = ModelSpec(task="toy", class_names=CLASSES, input_size=(16, 16), architecture="tiny_cnn")
    return model, spec


def test_export_release_records_the_projection_and_writes_the_reference(
    tmp_path: Path, manifest: Path, model_and_spec
) -> None:
    model, spec = model_and_spec
    task = TaskConfig(name="toy", kind="classification", classes=CLASSES, sources=[])
    out = export_release(model, spec, tmp_path / "run", manifest=manifest, reference_task=task)
    assert [o.name for o in onnx.load(str(out.fp32_path)).graph.output] == ["logits", "features"]
    assert [o.name for o in onnx.load(str(out.shipped_path)).graph.output] == ["logits", "features"]
    assert out.parity["features_max_abs_diff"] < 1e-4
    for path in (out.fp32_path, out.shipped_path):
        data = ModelSpec.load(ModelSpec.card_path(path)).extra[CARD_KEY]
        assert data["dims"] == 24 and data["feature_dims"] == 32 and data["n"] == 40
        assert data["fitted_on"].startswith("val split of") and len(data["components"]) == 24
        assert 0 < data["explained_variance_ratio_total"] <= 1
    _proba, emb = OnnxClassifier(out.shipped_path).predict_with_embedding([np.zeros((20, 20, 3), np.uint8)])
    assert emb is not None and emb.shape == (1, 24) and emb.dtype == np.float16
    assert out.reference_path == out.shipped_path.with_suffix(".reference.json")
    profile = ReferenceProfile.load(out.reference_path)
    assert profile.info["images"] == 49 and profile.n_embedding == 49
    assert profile.accuracy is not None


def test_too_few_val_images_fit_fewer_dims(tmp_path: Path, model_and_spec) -> None:
    model, spec = model_and_spec
    small = _manifest(tmp_path / "small", {"val": 6, "test": 3})
    out = export_release(model, spec, tmp_path / "run", manifest=small, weights="fp32")
    assert ModelSpec.load(ModelSpec.card_path(out.shipped_path)).extra[CARD_KEY]["dims"] == 5
    assert out.reference_path is None


def test_release_checkpoint_writes_elsewhere_and_leaves_the_run_alone(
    tmp_path: Path, manifest: Path, model_and_spec
) -> None:
    model, spec = model_and_spec
    run = tmp_path / "run"
    save_checkpoint(
        run / "best.pt",
        {"model_state": model.state_dict(), "spec": spec.to_dict(), "model_kwargs": {"width": 8}},
    )
    (run / "config.yaml").write_text(
        yaml.safe_dump({"manifest": str(manifest), "train": {"int8_float_nodes": []}})
    )
    (run / "mlflow_run_id").write_text("abc123\n")
    before = sorted(p.name for p in run.iterdir())
    out = release_checkpoint(run / "best.pt", tmp_path / "again")
    assert sorted(p.name for p in run.iterdir()) == before
    assert out.shipped_path == tmp_path / "again" / "model_int8.onnx"
    card = ModelSpec.load(ModelSpec.card_path(out.shipped_path))
    assert card.extra["mlflow_run_id"] == "abc123" and card.extra["released_from"].endswith("best.pt")
    assert card.extra[CARD_KEY]["dims"] == 24
    with pytest.raises(ValueError, match="must not be the run folder"):
        release_checkpoint(run / "best.pt", run)
