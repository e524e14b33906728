"""MASKOPS_DEVICE: providers and torch device per setting (CPU only here; CUDA is simulated)."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from maskops.config import Settings
from maskops.device import (
    CPU_PROVIDER,
    CUDA_PROVIDER,
    TENSORRT_PROVIDER,
    DeviceError,
    onnx_providers,
    resolve_device,
    torch_device,
)

CPU_ONLY = ["AzureExecutionProvider", CPU_PROVIDER]
GPU_ORT = [TENSORRT_PROVIDER, CUDA_PROVIDER, CPU_PROVIDER]


@pytest.mark.parametrize(
    ("setting", "available", "expected"),
    [
        ("auto", CPU_ONLY, [CPU_PROVIDER]),
        ("cpu", CPU_ONLY, [CPU_PROVIDER]),
        ("cpu", GPU_ORT, [CPU_PROVIDER]),
        ("auto", GPU_ORT, [TENSORRT_PROVIDER, CUDA_PROVIDER, CPU_PROVIDER]),
        ("cuda", GPU_ORT, [TENSORRT_PROVIDER, CUDA_PROVIDER, CPU_PROVIDER]),
        # order is ours (TensorRT, CUDA, CPU), not the order ONNX Runtime lists them in
        ("cuda", [CPU_PROVIDER, CUDA_PROVIDER], [CUDA_PROVIDER, CPU_PROVIDER]),
        ("auto", [CUDA_PROVIDER, CPU_PROVIDER, TENSORRT_PROVIDER], GPU_ORT),
    ],
)
def test_onnx_providers(setting: str, available: list[str], expected: list[str]) -> None:
    assert onnx_providers(setting, available) == expected


def test_cuda_without_cuda_provider_is_a_clear_error() -> None:
    with pytest.raises(DeviceError, match=r"MASKOPS_DEVICE=cuda.*CUDAExecutionProvider.*auto or cpu"):
        onnx_providers("cuda", CPU_ONLY)


def test_tensorrt_alone_is_not_cuda() -> None:
    with pytest.raises(DeviceError, match="MASKOPS_DEVICE=cuda"):
        onnx_providers("cuda", [TENSORRT_PROVIDER, CPU_PROVIDER])


@pytest.mark.parametrize(
    ("setting", "cuda_available", "expected"),
    [
        ("auto", False, "cpu"),
        ("cpu", False, "cpu"),
        ("cpu", True, "cpu"),
        ("auto", True, "cuda"),
        ("cuda", True, "cuda"),
    ],
)
def test_torch_device(setting: str, cuda_available: bool, expected: str) -> None:
    assert torch_device(setting, cuda_available) == torch.device(expected)


def test_torch_cuda_without_gpu_is_a_clear_error() -> None:
    with pytest.raises(DeviceError, match=r"MASKOPS_DEVICE=cuda but torch sees no CUDA device"):
        torch_device("cuda", cuda_available=False)


def test_unknown_setting() -> None:
    with pytest.raises(DeviceError, match=r"MASKOPS_DEVICE='gpu' is not a device; valid: auto, cpu, cuda"):
        onnx_providers("gpu", CPU_ONLY)
    with pytest.raises(ValidationError, match="device"):
        Settings(device="gpu")  # type: ignore[arg-type]


def test_this_machine_auto_is_cpu() -> None:
    """Here (no GPU): auto resolves to the CPU for both runtimes, read from the real installations."""
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    providers, device = resolve_device("auto")
    assert providers[-1] == CPU_PROVIDER and CUDA_PROVIDER not in providers
    assert device == torch.device("cpu")


def test_setting_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MASKOPS_DEVICE", "cpu")
    assert onnx_providers(available=GPU_ORT) == [CPU_PROVIDER]
    monkeypatch.setenv("MASKOPS_DEVICE", "cuda")
    with pytest.raises(DeviceError, match="MASKOPS_DEVICE=cuda"):
        torch_device(cuda_available=False)


def test_classifier_and_detector_refuse_cuda_here(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sessions read MASKOPS_DEVICE: asking for CUDA on a CPU-only runtime fails with the device error."""
    import onnxruntime as ort

    if CUDA_PROVIDER in ort.get_available_providers():
        pytest.skip("this ONNX Runtime has CUDA")
    from maskops.config import Settings as S
    from maskops.detect.detectors import YuNetDetector

    yunet = S().yunet_path
    if yunet is None:
        pytest.skip("YuNet weights not present")
    monkeypatch.setenv("MASKOPS_DEVICE", "cuda")
    with pytest.raises(DeviceError, match="MASKOPS_DEVICE=cuda"):
        YuNetDetector(yunet)
    monkeypatch.setenv("MASKOPS_DEVICE", "cpu")
    assert YuNetDetector(yunet)._session.get_providers() == [CPU_PROVIDER]
