"""Export of a tiny torch classifier to ONNX, its card, and the torch/ONNX parity check."""

from __future__ import annotations

import copy
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from maskops.export.onnx import ParityError, check_parity, export_onnx, torch_features
from maskops.inference.preprocess import preprocess
from maskops.provenance import git_commit
from maskops.types import ModelSpec


def test_export_writes_valid_self_contained_onnx_with_dynamic_batch(exported, spec: ModelSpec) -> None:
    assert exported.is_file()
    assert sorted(p.name for p in exported.parent.iterdir()) == ["tiny.json", "tiny.onnx"]  # no .data
    model = onnx.load(str(exported))
    onnx.checker.check_model(model)
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    assert [i.name for i in model.graph.input] == ["input"]
    assert [o.name for o in model.graph.output] == ["logits", "features"]
    session = ort.InferenceSession(str(exported), providers=["CPUExecutionProvider"])
    for n in (1, 5):
        logits, features = session.run(None, {"input": np.zeros((n, 3, 24, 20), np.float32)})
        assert logits.shape == (n, 3)
        assert features.shape == (n, 8)


def test_features_output_matches_torchs_pooled_features(tiny_model, exported, images, spec) -> None:
    batch = preprocess(images, spec)
    session = ort.InferenceSession(str(exported), providers=["CPUExecutionProvider"])
    logits, features = session.run(None, {"input": batch})
    expected = torch_features(tiny_model, batch)
    # the head's input: global-average-pooled ReLU activations of the conv layer
    with torch.no_grad():
        x = torch.from_numpy(batch)
        pooled = tiny_model.pool(torch.relu(tiny_model.bn(tiny_model.conv(x)))).flatten(1).numpy()
    np.testing.assert_allclose(expected, pooled, atol=1e-6)
    np.testing.assert_allclose(features, expected, atol=1e-5)
    with torch.no_grad():
        np.testing.assert_allclose(logits, tiny_model(torch.from_numpy(batch)).numpy(), atol=1e-5)


def test_export_without_features_has_the_logits_only(tmp_path, tiny_model, spec: ModelSpec) -> None:
    path = export_onnx(tiny_model, spec, tmp_path / "old.onnx", features=False)
    assert [o.name for o in onnx.load(str(path)).graph.output] == ["logits"]


def test_features_need_a_linear_head(tmp_path, spec: ModelSpec) -> None:
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 3, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()
    ).eval()
    with pytest.raises(ValueError, match=r"no nn\.Linear head"):
        export_onnx(model, spec, tmp_path / "m.onnx")
    assert export_onnx(model, spec, tmp_path / "m.onnx", features=False).is_file()


def test_export_writes_card_with_commit_and_opset(exported, spec: ModelSpec) -> None:
    card = ModelSpec.load(ModelSpec.card_path(exported))
    assert card.class_names == spec.class_names
    assert card.input_size == spec.input_size
    assert card.temperature == 1.5
    assert card.metrics == {"macro_f1": 0.9}
    assert card.extra["opset"] == 17
    assert card.git_commit == git_commit()
    raw = json.loads(ModelSpec.card_path(exported).read_text())
    assert raw["format"] == "onnx"


def test_export_leaves_the_callers_model_untouched(tmp_path, spec: ModelSpec, tiny_net) -> None:
    model = tiny_net().train()
    export_onnx(model, spec, tmp_path / "m.onnx")
    assert model.training


def test_git_commit_outside_a_repo_is_empty(tmp_path) -> None:
    assert git_commit(tmp_path) == ""


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"opset": 13}, "opset must be >= 17"),
        ({"out_name": "model.pt"}, "must end in .onnx"),
        ({"num_classes": 2}, r"expected \(2, 3\)"),
    ],
)
def test_export_rejects_bad_arguments(tmp_path, spec: ModelSpec, tiny_net, kwargs: dict, match: str) -> None:
    model = tiny_net(kwargs.pop("num_classes", 3)).eval()
    out = tmp_path / kwargs.pop("out_name", "m.onnx")
    with pytest.raises(ValueError, match=match):
        export_onnx(model, spec, out, **kwargs)
    assert not out.exists()


def test_parity_passes_for_the_exported_model(tiny_model, exported, images, spec: ModelSpec) -> None:
    result = check_parity(tiny_model, exported, images, spec, batch_size=5)
    assert result.passed
    assert result.n == len(images)
    assert result.max_abs_diff <= 1e-4
    assert result.argmax_agreement == 1.0


def test_parity_fails_for_a_different_model(tiny_model, exported, images, spec: ModelSpec) -> None:
    other = copy.deepcopy(tiny_model)
    with torch.no_grad():
        other.fc.bias += torch.tensor([3.0, 0.0, -3.0])
    with pytest.raises(ParityError, match="differs from torch") as info:
        check_parity(other, exported, images, spec)
    assert not info.value.result.passed
    assert info.value.result.max_abs_diff > 0.01


def test_parity_needs_images(tiny_model, exported, spec: ModelSpec) -> None:
    with pytest.raises(ValueError, match="at least one image"):
        check_parity(tiny_model, exported, [], spec)
