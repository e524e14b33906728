"""Every registered model: builds, runs forward/backward on a tiny batch, exports to ONNX."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from maskops.models import (
    UnknownModelError,
    _registry,
    create_model,
    list_models,
    model_options,
    register_model,
)

SIZE = 32


@pytest.mark.parametrize("name", list_models())
def test_forward_backward_no_nan(name: str) -> None:
    torch.manual_seed(0)
    model = create_model(name, num_classes=3, pretrained=False, input_size=SIZE)
    model.train()
    x = torch.randn(4, 3, SIZE, SIZE)
    logits = model(x)
    assert logits.shape == (4, 3)
    assert torch.isfinite(logits).all()
    loss = torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1, 2, 0]))
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(float(g.abs().sum()) > 0 for g in grads)


@pytest.mark.parametrize("name", list_models())
def test_exports_to_onnx_with_dynamic_batch(name: str, tmp_path: Path) -> None:
    ort = pytest.importorskip("onnxruntime")
    model = create_model(name, num_classes=2, pretrained=False, input_size=SIZE).eval()
    path = tmp_path / f"{name}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (torch.randn(1, 3, SIZE, SIZE),),
            str(path),
            dynamo=False,
            opset_version=17,
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "n"}, "logits": {0: "n"}},
        )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.randn(3, 3, SIZE, SIZE)
    got = session.run(None, {"input": x.numpy()})[0]
    with torch.no_grad():
        want = model(x).numpy()
    assert got.shape == (3, 2)
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_efficientnet_pretrained_weights_are_loaded() -> None:
    a = create_model("efficientnet_lite0", num_classes=3, pretrained=True, input_size=SIZE)
    b = create_model("efficientnet_lite0", num_classes=3, pretrained=True, input_size=SIZE)
    # same ImageNet stem in both (random init would differ), a fresh 3-class head
    assert torch.equal(a._conv_stem.weight, b._conv_stem.weight)
    assert a._fc.out_features == 3


def _head_map_side(model: torch.nn.Module, side: int) -> int:
    seen: list[int] = []
    hook = model._conv_head.register_forward_hook(lambda _m, _i, out: seen.append(out.shape[-1]))
    with torch.no_grad():
        model.eval()(torch.randn(1, 3, side, side))
    hook.remove()
    return seen[0]


def test_efficientnet_padding_side_sets_the_last_feature_maps() -> None:
    # at 80 px the 5x5 map entering block 11 (5x5 kernel, stride 2) is padded (2, 2) for 80 -> 3x3,
    # or (1, 2) as for 224, the ImageNet size -> 2x2; the stem keeps the same padding either way
    own = create_model("efficientnet_lite0", num_classes=3, pretrained=False, input_size=80)
    imagenet = create_model("efficientnet_lite0", num_classes=3, pretrained=False, input_size=80, pad_for=224)
    assert _head_map_side(own, 80) == 3
    assert _head_map_side(imagenet, 80) == 2
    assert own._blocks[11]._depthwise_conv.static_padding.padding == (2, 2, 2, 2)
    assert imagenet._blocks[11]._depthwise_conv.static_padding.padding == (1, 2, 1, 2)
    with pytest.raises(ValueError, match="pad_for"):
        create_model("efficientnet_lite0", num_classes=3, pretrained=False, input_size=80, pad_for=0)


def test_model_options_are_the_builder_keywords() -> None:
    assert model_options("efficientnet_lite0") == ["dropout", "input_size", "pad_for"]
    assert model_options("tiny_cnn") == ["width"]
    with pytest.raises(UnknownModelError, match="resnet9000"):
        model_options("resnet9000")


def test_unknown_model_lists_valid_names() -> None:
    with pytest.raises(UnknownModelError, match="tiny_cnn") as info:
        create_model("resnet9000", num_classes=2)
    assert isinstance(info.value, ValueError)
    assert "resnet9000" in str(info.value)


def test_too_few_classes() -> None:
    with pytest.raises(ValueError, match="num_classes"):
        create_model("tiny_cnn", num_classes=1)


def test_register_warns_on_overwrite() -> None:
    def my_test_model(num_classes: int, pretrained: bool = False, **_: object) -> object:
        return torch.nn.Linear(1, num_classes)

    try:
        register_model(my_test_model)
        assert "my_test_model" in list_models()
        with pytest.warns(UserWarning, match="already registered"):
            register_model(my_test_model)
    finally:
        _registry._MODELS.pop("my_test_model", None)
