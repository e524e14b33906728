"""Where models run: ``MASKOPS_DEVICE=auto|cpu|cuda`` resolved to ONNX Runtime providers and a torch device.

- ``cpu``: ONNX Runtime's CPU provider; torch on the CPU.
- ``cuda``: TensorRT (when onnxruntime-gpu was built with it and it is installed), then CUDA, then
  the CPU provider for the operators the GPU providers do not take; torch on ``cuda`` with mixed
  precision in training. A machine without CUDA is an error naming ``MASKOPS_DEVICE``.
- ``auto`` (the default): ``cuda`` when the runtime offers it, else ``cpu``.

ONNX Runtime and torch are asked separately: a serving image has ONNX Runtime and no torch, and a
training machine may have CUDA torch with the CPU-only ``onnxruntime`` wheel.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal, get_args

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

DeviceSetting = Literal["auto", "cpu", "cuda"]
DEVICES: tuple[str, ...] = get_args(DeviceSetting)
ENV_VAR = "MASKOPS_DEVICE"

CPU_PROVIDER = "CPUExecutionProvider"
CUDA_PROVIDER = "CUDAExecutionProvider"
TENSORRT_PROVIDER = "TensorrtExecutionProvider"
_GPU_PROVIDERS = (TENSORRT_PROVIDER, CUDA_PROVIDER)  # in order of preference


class DeviceError(ValueError):
    """A device that is not valid or does not exist on this machine."""


def _check(setting: str) -> str:
    if setting not in DEVICES:
        raise DeviceError(f"{ENV_VAR}={setting!r} is not a device; valid: {', '.join(DEVICES)}")
    return setting


def current_setting() -> str:
    """``MASKOPS_DEVICE`` as the process-wide ``Settings`` read it (environment or ``.env``)."""
    from maskops.config import Settings

    return str(Settings().device)


def onnx_providers(setting: str | None = None, available: Sequence[str] | None = None) -> list[str]:
    """ONNX Runtime execution providers for ``setting``, in order of preference.

    Args:
        setting: ``auto``, ``cpu`` or ``cuda``; ``None`` reads ``MASKOPS_DEVICE`` (default ``auto``).
        available: the providers this ONNX Runtime offers (default ``ort.get_available_providers()``).

    Returns:
        e.g. ``["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]`` for
        ``cuda`` with onnxruntime-gpu and TensorRT, ``["CPUExecutionProvider"]`` for ``cpu``.

    Raises:
        DeviceError: an unknown setting, or ``cuda`` when this ONNX Runtime has no CUDA provider.
    """
    device = _check(current_setting() if setting is None else setting)
    if device == "cpu":
        return [CPU_PROVIDER]
    if available is None:
        import onnxruntime as ort

        available = ort.get_available_providers()
    gpu = [p for p in _GPU_PROVIDERS if p in available]
    if device == "cuda" and CUDA_PROVIDER not in gpu:
        raise DeviceError(
            f"{ENV_VAR}=cuda but ONNX Runtime offers no {CUDA_PROVIDER} (available: "
            f"{', '.join(available) or 'none'}); install onnxruntime-gpu on a machine with CUDA, "
            f"or set {ENV_VAR}=auto or cpu"
        )
    return [*gpu, CPU_PROVIDER]


def torch_device(setting: str | None = None, cuda_available: bool | None = None) -> torch.device:
    """The torch device for ``setting`` (``None`` reads ``MASKOPS_DEVICE``).

    Args:
        setting: ``auto``, ``cpu`` or ``cuda``.
        cuda_available: whether torch sees a GPU (default ``torch.cuda.is_available()``).

    Raises:
        DeviceError: an unknown setting, or ``cuda`` when torch sees no CUDA device.
    """
    import torch

    device = _check(current_setting() if setting is None else setting)
    if device == "cpu":
        return torch.device("cpu")
    if cuda_available is None:
        cuda_available = torch.cuda.is_available()
    if cuda_available:
        return torch.device("cuda")
    if device == "cuda":
        raise DeviceError(
            f"{ENV_VAR}=cuda but torch sees no CUDA device (torch {torch.__version__}, built "
            f"with CUDA {torch.version.cuda or 'none'}); set {ENV_VAR}=auto or cpu"
        )
    return torch.device("cpu")


def resolve_device(
    setting: str | None = None,
    *,
    available: Sequence[str] | None = None,
    cuda_available: bool | None = None,
) -> tuple[list[str], torch.device]:
    """Both answers at once: ``(onnx_providers(setting), torch_device(setting))`` (needs torch)."""
    return onnx_providers(setting, available), torch_device(setting, cuda_available)
