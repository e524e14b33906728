"""Int8 quantization of an exported model and the accuracy change report."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from maskops.export.onnx import export_onnx
from maskops.export.quantize import (
    calibration_sample,
    compare_accuracy,
    compress_fp16,
    float_edge_nodes,
    quantize_int8,
)
from maskops.inference.classifier import OnnxClassifier
from maskops.models import create_model
from maskops.types import ModelSpec


@pytest.fixture(scope="module")
def int8_static(exported, images, tmp_path_factory: pytest.TempPathFactory):
    return quantize_int8(exported, tmp_path_factory.mktemp("q") / "tiny_int8.onnx", images)


def test_static_quantization_writes_qdq_model_and_card(int8_static, exported, spec: ModelSpec) -> None:
    ops = {node.op_type for node in onnx.load(str(int8_static)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    card = ModelSpec.load(ModelSpec.card_path(int8_static))
    assert card.extra["quantized"] == "int8"
    assert card.extra["quantization"]["method"] == "static"
    assert card.extra["quantization"]["calibration_images"] == 12
    assert card.extra["quantization"]["source"] == exported.name
    assert card.class_names == spec.class_names
    assert "quantized" not in ModelSpec.load(ModelSpec.card_path(exported)).extra


def test_first_conv_and_classifier_stay_float(int8_static, exported, tmp_path) -> None:
    edges = float_edge_nodes(exported)
    assert len(edges) == 2
    card = ModelSpec.load(ModelSpec.card_path(int8_static))
    assert card.extra["quantization"]["float_nodes"] == edges

    def float_weight_ops(path) -> set[str]:
        graph = onnx.load(str(path)).graph
        dq_out = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
        # a quantized Conv/Gemm reads its weight from a DequantizeLinear; a float one from an initializer
        return {
            n.op_type
            for n in graph.node
            if n.op_type in ("Conv", "Gemm", "MatMul") and n.input[1] not in dq_out
        }

    assert float_weight_ops(int8_static) == {"Conv", "Gemm"} or float_weight_ops(int8_static) == {
        "Conv",
        "MatMul",
    }
    everything = quantize_int8(
        exported, tmp_path / "all.onnx", [np.zeros((8, 8, 3), np.uint8)] * 2, float_edges=False
    )
    assert float_weight_ops(everything) == set()
    assert ModelSpec.load(ModelSpec.card_path(everything)).extra["quantization"]["float_nodes"] == []


def test_float_node_patterns_keep_those_nodes_float(spec: ModelSpec, images, tmp_path) -> None:
    torch.manual_seed(0)
    net = create_model("tiny_cnn", num_classes=3, pretrained=False, width=4).eval()  # four convs
    exported = export_onnx(net, spec, tmp_path / "cnn.onnx")
    graph = onnx.load(str(exported)).graph
    convs = [n.name for n in graph.node if n.op_type == "Conv"]
    assert len(convs) >= 3
    second = convs[1]
    out = quantize_int8(exported, tmp_path / "f.onnx", images, float_nodes=[f"^{second}$"])
    q = onnx.load(str(out)).graph
    dq_out = {o for n in q.node if n.op_type == "DequantizeLinear" for o in n.output}
    weight_from_dq = {n.name: n.input[1] in dq_out for n in q.node if n.op_type == "Conv"}
    assert weight_from_dq[second] is False  # kept float, as the first conv (an edge)
    assert weight_from_dq[convs[0]] is False
    assert all(weight_from_dq[c] for c in convs[2:])  # the rest is quantized
    card = ModelSpec.load(ModelSpec.card_path(out))
    assert second in card.extra["quantization"]["float_nodes"]
    with pytest.raises(ValueError, match=r"pattern 'nope' matches no node"):
        quantize_int8(exported, tmp_path / "g.onnx", images, float_nodes=["nope"])
    with pytest.raises(ValueError, match="not a regular expression"):
        quantize_int8(exported, tmp_path / "h.onnx", images, float_nodes=["("])


def test_calibration_sample_is_seeded_and_mixed() -> None:
    items = list(range(100))
    a = calibration_sample(items, 10)
    assert a == calibration_sample(items, 10) and len(set(a)) == 10
    assert a != items[:10]
    assert calibration_sample(items[:5], 10) == items[:5]


def test_compare_accuracy_reports_the_change(int8_static, exported, images) -> None:
    # Labels = the fp32 predictions with two flipped, so the fp32 accuracy is known exactly.
    labels = OnnxClassifier(exported).predict(images)[0].copy()
    labels[:2] = (labels[:2] + 1) % 3
    report = compare_accuracy(exported, int8_static, images, labels)
    assert report["n"] == len(images)
    assert report["fp32_accuracy"] == pytest.approx(10 / 12)
    assert report["accuracy_change"] == pytest.approx(report["int8_accuracy"] - report["fp32_accuracy"])
    assert 0.0 <= report["agreement"] <= 1.0
    assert report["max_abs_prob_diff"] < 0.2  # int8 stays close to fp32 on this small net


def test_dynamic_quantization_needs_no_calibration_images(exported, tmp_path) -> None:
    out = quantize_int8(exported, tmp_path / "dyn.onnx", [], method="dynamic")
    assert ModelSpec.load(ModelSpec.card_path(out)).extra["quantization"]["method"] == "dynamic"
    assert OnnxClassifier(out).predict_proba([np.zeros((8, 8, 3), np.uint8)]).shape == (1, 3)


@pytest.mark.parametrize(
    ("method", "n_images", "match"),
    [("static", 0, "needs calibration images"), ("float16", 2, "unknown quantization method")],
)
def test_quantize_rejects_bad_arguments(exported, images, tmp_path, method, n_images, match) -> None:
    with pytest.raises(ValueError, match=match):
        quantize_int8(exported, tmp_path / "q.onnx", images[:n_images], method=method)


def test_compare_accuracy_checks_labels(exported, images) -> None:
    with pytest.raises(ValueError, match="12 images but 3 labels"):
        compare_accuracy(exported, exported, images, [0, 1, 2])


def test_fp16_weights_halve_the_file_and_stay_within_rounding(exported, images, tmp_path) -> None:
    out = compress_fp16(exported, tmp_path / "half.onnx")
    graph = onnx.load(str(out)).graph
    stored = {init.data_type for init in graph.initializer if len(init.dims) > 1}
    assert stored == {onnx.TensorProto.FLOAT16}
    assert sum(node.op_type == "Cast" for node in graph.node) >= 1

    def weight_bytes(path) -> int:
        return sum(len(i.raw_data) for i in onnx.load(str(path)).graph.initializer)

    assert weight_bytes(out) < 0.6 * weight_bytes(exported)
    p32 = OnnxClassifier(exported).predict_proba(images)
    p16 = OnnxClassifier(out).predict_proba(images)
    assert p16.dtype == np.float32
    assert np.max(np.abs(p32 - p16)) < 1e-2
    assert not np.array_equal(p32, p16)  # the weights really were rounded
    card = ModelSpec.load(ModelSpec.card_path(out))
    assert card.extra["quantized"] == "fp16-weights"
    report = compare_accuracy(exported, out, images, p32.argmax(1), label="fp16")
    assert report["fp32_accuracy"] == 1.0 and "fp16_accuracy" in report


@pytest.mark.parametrize("form", ["static", "dynamic", "fp16"])
def test_compressed_models_keep_the_features_output(form, exported, images, tmp_path) -> None:
    out = tmp_path / f"{form}.onnx"
    if form == "fp16":
        path = compress_fp16(exported, out)
    else:
        path = quantize_int8(exported, out, images, method=form)
    assert [o.name for o in onnx.load(str(path)).graph.output] == ["logits", "features"]
    fp32, small = OnnxClassifier(exported), OnnxClassifier(path)
    assert small.has_features
    f32, f8 = fp32.predict_features(images), small.predict_features(images)
    assert f8.shape == f32.shape == (len(images), 8)
    # the int8 features are close to fp32's, not equal
    assert np.corrcoef(f32.ravel(), f8.ravel())[0, 1] > 0.95
