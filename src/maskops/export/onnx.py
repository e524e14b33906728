"""Export a torch classifier to a self-contained ONNX file, with its card, and check parity.

The exporter is torch's TorchScript-based one (``dynamo=False``): the torch.export-based exporter
(torch's default since 2.9) needs ``onnxscript``, which is not a dependency. The TorchScript exporter
writes every weight inside the ``.onnx`` file (no external data), with a dynamic batch axis.
"""

from __future__ import annotations

import copy
import logging
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from maskops.inference.preprocess import preprocess
from maskops.numeric import softmax
from maskops.provenance import git_commit
from maskops.types import ModelSpec

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

MIN_OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "logits"


class ParityError(ValueError):
    """The ONNX model's probabilities differ from torch's beyond the tolerance."""

    def __init__(self, message: str, result: ParityResult) -> None:
        super().__init__(message)
        self.result = result


@dataclass(frozen=True)
class ParityResult:
    """How closely ONNX Runtime reproduces torch on the same preprocessed images.

    Attributes:
        n: number of images compared.
        max_abs_diff: largest absolute difference between the two softmax probability arrays.
        argmax_agreement: fraction of images whose predicted class is the same on both sides.
        passed: ``max_abs_diff <= atol`` and every argmax agrees.
        atol: the tolerance that was applied.
    """

    n: int
    max_abs_diff: float
    argmax_agreement: float
    passed: bool
    atol: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "max_abs_diff": self.max_abs_diff,
            "argmax_agreement": self.argmax_agreement,
            "passed": self.passed,
            "atol": self.atol,
        }


def export_onnx(model: torch.nn.Module, spec: ModelSpec, out_path: str | Path, *, opset: int = 17) -> Path:
    """Export ``model`` to ONNX with a dynamic batch axis and write its card beside it.

    The file has one input ``input`` (N x 3 x H x W float32, normalised as ``spec`` says) and one
    output ``logits`` (N x C). Weights are stored inside the file. The card is ``spec`` with the git
    commit filled in (kept when the spec already names the training commit), ``format="onnx"`` and
    the opset and export time in ``extra``.

    Args:
        model: a torch classifier taking N x 3 x H x W and returning N x C logits.
        spec: the model card; ``input_size`` and ``class_names`` must match the model.
        out_path: where to write the ``.onnx`` file (parent folders are created).
        opset: ONNX opset, at least 17.

    Returns:
        The path of the written ``.onnx`` file.

    Raises:
        ValueError: opset below 17, or the model's output does not have ``spec.num_classes`` columns.
        onnx.checker.ValidationError: the exported graph is not valid ONNX.
    """
    import onnx
    import torch

    if opset < MIN_OPSET:
        raise ValueError(f"opset must be >= {MIN_OPSET}, got {opset}")
    out_path = Path(out_path)
    if out_path.suffix != ".onnx":
        raise ValueError(f"out_path must end in .onnx, got {out_path}")
    out_path.parent.mkdir(parents=True, exist_ok=True)

    # Export a CPU copy in eval mode so the caller's model (device, train/eval state) is untouched.
    cpu_model = copy.deepcopy(model).to("cpu").eval()
    h, w = spec.input_size
    dummy = torch.zeros(2, 3, h, w, dtype=torch.float32)
    with torch.no_grad():
        out = cpu_model(dummy)
    if out.ndim != 2 or out.shape[1] != spec.num_classes:
        raise ValueError(
            f"model output has shape {tuple(out.shape)} for input {tuple(dummy.shape)}; "
            f"expected (2, {spec.num_classes}) for classes {spec.class_names}"
        )

    tmp_path = out_path.with_name(out_path.name + ".tmp")
    with warnings.catch_warnings():
        # The TorchScript exporter announces its deprecation on every call; it is chosen on purpose.
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.simplefilter("ignore", category=FutureWarning)
        warnings.simplefilter("ignore", category=UserWarning)
        torch.onnx.export(
            cpu_model,
            (dummy,),
            str(tmp_path),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            opset_version=opset,
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            do_constant_folding=True,
            dynamo=False,
        )
    try:
        onnx.checker.check_model(str(tmp_path), full_check=True)
    except Exception:
        tmp_path.unlink(missing_ok=True)
        raise
    os.replace(tmp_path, out_path)

    head = git_commit()
    card = copy.deepcopy(spec)
    card.git_commit = spec.git_commit or head
    card.format = "onnx"
    card.extra = {
        **spec.extra,
        "opset": opset,
        "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "export_git_commit": head,
    }
    card.save(ModelSpec.card_path(out_path))
    logger.info("exported %s (%.1f KB, opset %d)", out_path, out_path.stat().st_size / 1024, opset)
    return out_path


def _torch_logits(model: torch.nn.Module, batch: np.ndarray, batch_size: int) -> np.ndarray:
    import torch

    model = copy.deepcopy(model).to("cpu").eval()
    outs = []
    with torch.no_grad():
        for start in range(0, batch.shape[0], batch_size):
            outs.append(model(torch.from_numpy(batch[start : start + batch_size])).numpy())
    return np.concatenate(outs).astype(np.float32)


def _onnx_logits(onnx_path: Path, batch: np.ndarray, batch_size: int) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    outs = [
        session.run(None, {name: batch[start : start + batch_size]})[0]
        for start in range(0, batch.shape[0], batch_size)
    ]
    return np.concatenate(outs).astype(np.float32)


def check_parity(
    model: torch.nn.Module,
    onnx_path: str | Path,
    images_bgr: Sequence[np.ndarray],
    spec: ModelSpec,
    *,
    atol: float = 1e-4,
    batch_size: int = 32,
) -> ParityResult:
    """Compare torch and ONNX Runtime on the same images, preprocessed once by ``preprocess``.

    Probabilities are ``softmax(logits / spec.temperature)``, as the served model reports them.

    Args:
        model: the torch model that was exported.
        onnx_path: the exported file.
        images_bgr: OpenCV BGR images (real validation crops, ideally), any size.
        spec: the model card giving the preprocessing and temperature.
        atol: largest allowed absolute difference of any probability.
        batch_size: images per forward pass.

    Returns:
        The figures, with ``passed=True``.

    Raises:
        ValueError: no images given.
        ParityError: a probability differs by more than ``atol`` or an argmax differs; the error
            carries the ``ParityResult`` as ``.result``.
    """
    if len(images_bgr) == 0:
        raise ValueError("check_parity needs at least one image")
    batch = preprocess(images_bgr, spec)
    # compared as float32, the precision the served model reports them in
    p_torch = softmax(_torch_logits(model, batch, batch_size), spec.temperature).astype(np.float32)
    p_onnx = softmax(_onnx_logits(Path(onnx_path), batch, batch_size), spec.temperature).astype(np.float32)
    if p_torch.shape != p_onnx.shape:
        raise ParityError(
            f"{onnx_path}: output shape {p_onnx.shape} differs from torch's {p_torch.shape}",
            ParityResult(len(images_bgr), float("inf"), 0.0, False, atol),
        )
    max_diff = float(np.max(np.abs(p_torch - p_onnx)))
    agreement = float(np.mean(p_torch.argmax(1) == p_onnx.argmax(1)))
    result = ParityResult(
        n=int(batch.shape[0]),
        max_abs_diff=max_diff,
        argmax_agreement=agreement,
        passed=bool(max_diff <= atol and agreement == 1.0),
        atol=atol,
    )
    logger.info(
        "parity on %d images: max |diff| %.2e (atol %.0e), argmax agreement %.4f",
        result.n,
        max_diff,
        atol,
        agreement,
    )
    if not result.passed:
        raise ParityError(
            f"{onnx_path}: ONNX differs from torch on {result.n} images: max |diff| of probabilities "
            f"{max_diff:.3g} (allowed {atol:.0e}), argmax agreement {agreement:.4f} (required 1.0)",
            result,
        )
    return result
