"""Shared fixtures: small generated images, a ``make_detections`` builder, the shared data root."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from maskops.types import Detections, ModelSpec

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("MASKOPS_SHARED_DIR", REPO_ROOT.parent / "shared"))
DATA_DIR = Path(os.environ.get("MASKOPS_DATA_DIR", SHARED / "datasets"))


def make_detections(
    xyxy: Sequence[Sequence[float]], class_id: Sequence[int], confidence: Sequence[float] | None = None
) -> Detections:
    return Detections.from_lists(xyxy, class_id, confidence)


@pytest.fixture
def tiny_image() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, size=(48, 64, 3), dtype=np.uint8)


@pytest.fixture
def data_dir() -> Path:
    return DATA_DIR


def require_dataset(name: str) -> Path:
    """Path of a dataset under the shared data root, or skip the test with the reason."""
    path = DATA_DIR / name
    if not path.is_dir():
        pytest.skip(f"dataset {name!r} not found at {path} (set MASKOPS_DATA_DIR to the shared datasets)")
    return path


@pytest.fixture(autouse=True)
def _isolated_work_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep tests from writing into the repository's work/ or mlflow.db."""
    monkeypatch.setenv("MASKOPS_WORK_DIR", str(tmp_path_factory.getbasetemp() / "work"))


# ---- a hand-built ONNX classifier whose logits are known in closed form (no torch needed)

# logits = W @ mean_over_pixels(normalised RGB) + b, one row per class.
WEIGHT = np.array([[4.0, 0.0, 0.0], [0.0, 4.0, 0.0], [0.0, 0.0, 4.0]], np.float32)
BIAS = np.array([0.0, 0.5, -0.5], np.float32)


def _write_linear_onnx(
    path: Path,
    spec: ModelSpec,
    weight: np.ndarray = WEIGHT,
    bias: np.ndarray = BIAS,
    *,
    fixed_batch: int | None = None,
    card: bool = True,
) -> Path:
    """GlobalAveragePool -> Flatten -> Gemm, with a dynamic (or fixed) batch axis."""
    h, w = spec.input_size
    batch: int | str = fixed_batch if fixed_batch is not None else "batch"
    graph = helper.make_graph(
        [
            helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
            helper.make_node("Flatten", ["pooled"], ["flat"]),
            helper.make_node("Gemm", ["flat", "W", "b"], ["logits"], transB=1),
        ],
        "linear",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, h, w])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, weight.shape[0]])],
        [numpy_helper.from_array(weight, "W"), numpy_helper.from_array(bias, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    if card:
        spec.save(ModelSpec.card_path(path))
    return path


def _expected_logits(images_bgr: list[np.ndarray], spec: ModelSpec) -> np.ndarray:
    from maskops.inference.preprocess import preprocess

    return preprocess(images_bgr, spec).mean(axis=(2, 3)) @ WEIGHT.T + BIAS


@pytest.fixture
def facemask_spec() -> ModelSpec:
    return ModelSpec(
        task="facemask",
        class_names=["with_mask", "without_mask", "mask_weared_incorrect"],
        input_size=(16, 12),
    )


@pytest.fixture
def linear_model(tmp_path: Path, facemask_spec: ModelSpec) -> Path:
    return _write_linear_onnx(tmp_path / "linear.onnx", facemask_spec)


@pytest.fixture
def write_linear_onnx() -> Callable[..., Path]:
    return _write_linear_onnx


@pytest.fixture
def expected_logits() -> Callable[[list[np.ndarray], ModelSpec], np.ndarray]:
    return _expected_logits


@pytest.fixture
def colour_images() -> list[np.ndarray]:
    """Seven crops of different sizes: pure red, green, blue (BGR order!) and random ones."""
    rng = np.random.default_rng(3)
    solid = []
    for bgr in ((0, 0, 255), (0, 255, 0), (255, 0, 0)):
        img = np.zeros((30, 20, 3), np.uint8)
        img[:] = bgr
        solid.append(img)
    noise = [rng.integers(0, 256, size=(10 + 7 * i, 40 - 5 * i, 3), dtype=np.uint8) for i in range(4)]
    return solid + noise
