"""Int8 quantization of an exported classifier with ONNX Runtime, and the accuracy change it costs.

Static QDQ quantization (per-channel weights, activations calibrated on real preprocessed crops) is
the default: for a convolutional network it is both the fastest int8 form in ONNX Runtime's CPU
provider and the closest to fp32. The network's first convolution (raw pixels in) and its final
classifier layer (logits out) stay in float by default: no measurable time, and on one 80 px facemask
run (s80a) most of the error (argmax agreement with fp32 on test 0.970 -> 0.982, val 0.986 -> 0.998;
on run s80b no change, BENCHMARKS.md).
Calibration images are drawn at random (seeded) from what the caller gives, so a class-sorted
manifest still calibrates on every class. Dynamic quantization (weights only, activations quantized at run
time) needs no calibration data and is kept as the fallback.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import re
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from maskops.inference.preprocess import preprocess
from maskops.types import ModelSpec

logger = logging.getLogger(__name__)

QuantMethod = Literal["static", "dynamic"]


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """ONNX Runtime's quantizer logs one INFO line per copied bias on the root logger; hide them."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        root.setLevel(level)


def _calibration_reader(input_name: str, batches: list[np.ndarray]) -> Any:
    from onnxruntime.quantization import CalibrationDataReader

    class _Reader(CalibrationDataReader):
        """Feeds preprocessed calibration batches to the calibrator, one at a time."""

        def __init__(self) -> None:
            self._iter: Iterator[np.ndarray] = iter(batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self._iter, None)
            return None if batch is None else {input_name: batch}

        def rewind(self) -> None:
            self._iter = iter(batches)

    return _Reader()


def calibration_sample(images: Sequence[Any], n: int, seed: int = 0) -> list[Any]:
    """``n`` items drawn without replacement (seeded) from ``images``, in a fixed order; all when fewer."""
    if len(images) <= n:
        return list(images)
    idx = np.random.default_rng(seed).permutation(len(images))[:n]
    return [images[int(i)] for i in idx]


def float_edge_nodes(onnx_path: str | Path) -> list[str]:
    """Names of the first ``Conv`` and the last ``Gemm``/``MatMul`` node (graph order) of a model."""
    import onnx

    nodes = onnx.load(str(onnx_path), load_external_data=False).graph.node
    first = next((n.name for n in nodes if n.op_type == "Conv"), None)
    last = next((n.name for n in reversed(nodes) if n.op_type in ("Gemm", "MatMul")), None)
    return [name for name in (first, last) if name]


def matching_nodes(onnx_path: str | Path, patterns: Sequence[str], label: str | Path = "") -> list[str]:
    """Names of the nodes (graph order) matched by any of ``patterns`` (``re.search``).

    Raises:
        ValueError: a pattern is not a valid regular expression or matches no node.
    """
    import onnx

    if not patterns:
        return []
    names = [n.name for n in onnx.load(str(onnx_path), load_external_data=False).graph.node]
    found: list[str] = []
    for pattern in patterns:
        try:
            rx = re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"float node pattern {pattern!r} is not a regular expression: {exc}") from None
        hits = [n for n in names if rx.search(n)]
        if not hits:
            raise ValueError(
                f"float node pattern {pattern!r} matches no node of {label or onnx_path} "
                f"(node names look like {names[len(names) // 2]!r})"
            )
        found += [n for n in hits if n not in found]
    return found


def quantize_int8(
    onnx_path: str | Path,
    out_path: str | Path,
    calibration_images_bgr: Sequence[np.ndarray],
    spec: ModelSpec | None = None,
    *,
    method: QuantMethod = "static",
    per_channel: bool = True,
    calibration_batch_size: int = 16,
    float_edges: bool = True,
    float_nodes: Sequence[str] = (),
) -> Path:
    """Quantize an fp32 ONNX classifier to int8 and write its card beside the new file.

    Args:
        onnx_path: the fp32 model (its card beside it is used when ``spec`` is not given).
        out_path: where to write the int8 ``.onnx`` file.
        calibration_images_bgr: real BGR crops (e.g. 64-256 validation images) used to calibrate
            activation ranges; ignored by ``method="dynamic"``.
        spec: the fp32 model's card.
        method: ``"static"`` (QDQ, calibrated) or ``"dynamic"`` (weights only).
        per_channel: per-output-channel weight scales (more accurate for depthwise convolutions).
        calibration_batch_size: images per calibration batch.
        float_edges: keep the first convolution and the last Gemm/MatMul in float (static only).
        float_nodes: regular expressions (``re.search`` on node names) of more nodes to keep in
            float (static only), e.g. ``/_blocks\\.0/`` for EfficientNet's first block, whose 3x3
            depthwise convolution on the largest map loses the most to int8.

    Returns:
        The path of the int8 model. Its card is ``spec`` with ``extra["quantized"] = "int8"`` and
        the method, calibration size and source file in ``extra["quantization"]``.

    Raises:
        ValueError: unknown method, static quantization without calibration images, or a
            ``float_nodes`` pattern that names no node of the model.
    """
    import onnxruntime as ort
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    onnx_path, out_path = Path(onnx_path), Path(out_path)
    if method not in ("static", "dynamic"):
        raise ValueError(f"unknown quantization method {method!r}; valid: 'static', 'dynamic'")
    if spec is None:
        spec = ModelSpec.load(ModelSpec.card_path(onnx_path))
    if method == "static" and len(calibration_images_bgr) == 0:
        raise ValueError("static quantization needs calibration images; pass some or use method='dynamic'")
    out_path.parent.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="maskops-quant-") as tmp, _quiet_root_logger():
        # Shape inference + graph optimisation first, as ONNX Runtime recommends before quantizing.
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(onnx_path), str(prepared), skip_symbolic_shape=False)
        excluded: list[str] = []
        if method == "static":
            excluded = float_edge_nodes(prepared) if float_edges else []
            excluded += [n for n in matching_nodes(prepared, float_nodes, onnx_path) if n not in excluded]
            input_name = (
                ort.InferenceSession(str(prepared), providers=["CPUExecutionProvider"]).get_inputs()[0].name
            )
            batches = [
                preprocess(calibration_images_bgr[i : i + calibration_batch_size], spec)
                for i in range(0, len(calibration_images_bgr), calibration_batch_size)
            ]
            quantize_static(
                str(prepared),
                str(out_path),
                _calibration_reader(input_name, batches),
                quant_format=QuantFormat.QDQ,
                per_channel=per_channel,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
                nodes_to_exclude=excluded,
            )
        else:
            quantize_dynamic(
                str(prepared), str(out_path), per_channel=per_channel, weight_type=QuantType.QInt8
            )

    card = copy.deepcopy(spec)
    card.extra = {
        **spec.extra,
        "quantized": "int8",
        "quantization": {
            "method": method,
            "per_channel": per_channel,
            "calibration_images": len(calibration_images_bgr) if method == "static" else 0,
            "float_nodes": excluded,
            "source": onnx_path.name,
        },
    }
    card.save(ModelSpec.card_path(out_path))
    logger.info(
        "quantized %s -> %s (%s, %.1f KB -> %.1f KB)",
        onnx_path,
        out_path,
        method,
        onnx_path.stat().st_size / 1024,
        out_path.stat().st_size / 1024,
    )
    return out_path


def compress_fp16(
    onnx_path: str | Path,
    out_path: str | Path,
    spec: ModelSpec | None = None,
    *,
    min_elements: int = 16,
) -> Path:
    """Store the float32 weights as float16 and let ONNX Runtime cast them back when it loads the file.

    Every float initializer with at least ``min_elements`` values is stored in half precision and
    followed by a ``Cast`` to float32. ONNX Runtime folds those casts into float32 constants when the
    session is created, so the model computes in float32 at float32 speed: the file is half the size
    and the only change is the rounding of each weight to 11 significant bits (unlike int8, whose
    activation quantization can move probabilities a lot).

    Returns:
        The path of the new model; its card has ``extra["quantized"] = "fp16-weights"``.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    onnx_path, out_path = Path(onnx_path), Path(out_path)
    if spec is None:
        spec = ModelSpec.load(ModelSpec.card_path(onnx_path))
    model = onnx.load(str(onnx_path))
    graph = model.graph
    casts = []
    converted = 0
    for init in graph.initializer:
        if init.data_type != TensorProto.FLOAT:
            continue
        values = numpy_helper.to_array(init)
        if values.size < min_elements:
            continue
        name = init.name
        init.CopyFrom(numpy_helper.from_array(values.astype(np.float16), f"{name}__fp16"))
        casts.append(helper.make_node("Cast", [f"{name}__fp16"], [name], to=TensorProto.FLOAT))
        converted += 1
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(casts + nodes)
    onnx.checker.check_model(model)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out_path))

    card = copy.deepcopy(spec)
    card.extra = {
        **spec.extra,
        "quantized": "fp16-weights",
        "quantization": {"method": "fp16-weights", "tensors": converted, "source": onnx_path.name},
    }
    card.save(ModelSpec.card_path(out_path))
    logger.info(
        "fp16 weights %s -> %s (%d tensors, %.1f KB -> %.1f KB)",
        onnx_path,
        out_path,
        converted,
        onnx_path.stat().st_size / 1024,
        out_path.stat().st_size / 1024,
    )
    return out_path


def compare_accuracy(
    fp32_path: str | Path,
    compressed_path: str | Path,
    images_bgr: Sequence[np.ndarray],
    labels: Sequence[int] | np.ndarray,
    *,
    batch_size: int = 64,
    label: str = "int8",
) -> dict[str, Any]:
    """Accuracy of the fp32 and a compressed model on the same labelled images, and how often they agree.

    Args:
        fp32_path: the original model (card beside it).
        compressed_path: the compressed model (int8 or fp16 weights; card beside it).
        images_bgr: BGR crops.
        labels: true class ids, one per image.
        batch_size: images per ONNX Runtime call.
        label: name of the compressed form in the returned keys (``int8``, ``fp16``).

    Returns:
        ``n``, ``fp32_accuracy``, ``<label>_accuracy``, ``accuracy_change`` (compressed - fp32),
        ``agreement`` (fraction of identical predictions) and ``max_abs_prob_diff``.

    Raises:
        ValueError: no images, or labels not matching the images.
    """
    from maskops.inference.classifier import OnnxClassifier

    y = np.asarray(labels, dtype=np.int64).reshape(-1)
    if len(images_bgr) == 0:
        raise ValueError("compare_accuracy needs at least one image")
    if y.shape[0] != len(images_bgr):
        raise ValueError(f"got {len(images_bgr)} images but {y.shape[0]} labels")
    p32 = OnnxClassifier(fp32_path).predict_proba(images_bgr, batch_size)
    p8 = OnnxClassifier(compressed_path).predict_proba(images_bgr, batch_size)
    pred32, pred8 = p32.argmax(1), p8.argmax(1)
    acc32, acc8 = float(np.mean(pred32 == y)), float(np.mean(pred8 == y))
    return {
        "n": int(y.shape[0]),
        "fp32_accuracy": acc32,
        f"{label}_accuracy": acc8,
        "accuracy_change": acc8 - acc32,
        "agreement": float(np.mean(pred32 == pred8)),
        "max_abs_prob_diff": float(np.max(np.abs(p32 - p8))),
    }
