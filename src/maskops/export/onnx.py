"""Export a torch classifier to a self-contained ONNX file, with its card, and check parity.

The exporter is torch's TorchScript-based one (``dynamo=False``): the torch.export-based exporter
(torch's default since 2.9) needs ``onnxscript``, which is not a dependency. The TorchScript exporter
writes every weight inside the ``.onnx`` file (no external data), with a dynamic batch axis.

Besides the logits the file has a second output, ``features``: the pooled features the classification
head reads (the input of the model's last ``nn.Linear``), from which serving computes the compact face
embedding (``maskops.inference.projection``). Files exported before it have the logits only; every
reader treats the second output as optional.
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
from maskops.inference.projection import FEATURES_OUTPUT
from maskops.numeric import softmax
from maskops.provenance import git_commit
from maskops.types import ModelSpec

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

MIN_OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
FEATURES_NAME = FEATURES_OUTPUT


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
        features_max_abs_diff: largest absolute difference of the ``features`` output from torch's
            pooled features (None when the file has no such output); reported, not gated.
    """

    n: int
    max_abs_diff: float
    argmax_agreement: float
    passed: bool
    atol: float
    features_max_abs_diff: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "n": self.n,
            "max_abs_diff": self.max_abs_diff,
            "argmax_agreement": self.argmax_agreement,
            "passed": self.passed,
            "atol": self.atol,
        }
        if self.features_max_abs_diff is not None:
            out["features_max_abs_diff"] = self.features_max_abs_diff
        return out


def classifier_head(model: torch.nn.Module) -> torch.nn.Linear:
    """The model's classification head: its last ``nn.Linear`` (in registration order).

    Raises:
        ValueError: the model has no ``nn.Linear``.
    """
    import torch

    heads = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    if not heads:
        raise ValueError(f"{type(model).__name__} has no nn.Linear head whose input could be exported")
    return heads[-1]


def with_features(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` returning ``(logits, pooled features)``: the features are what its head reads,
    captured by a forward pre-hook (so any architecture with a final ``nn.Linear`` works)."""
    import torch

    head = classifier_head(model)

    class _WithFeatures(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            seen: list[torch.Tensor] = []
            handle = head.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
            try:
                logits = self.model(x)
            finally:
                handle.remove()
            return logits, seen[-1].flatten(1)

    return _WithFeatures()


def torch_features(model: torch.nn.Module, batch: np.ndarray, batch_size: int = 64) -> np.ndarray:
    """The pooled features (head input) of ``model`` on a preprocessed batch, computed by torch."""
    import torch

    wrapped = with_features(copy.deepcopy(model).to("cpu").eval())
    outs = []
    with torch.no_grad():
        for start in range(0, batch.shape[0], batch_size):
            outs.append(wrapped(torch.from_numpy(batch[start : start + batch_size]))[1].numpy())
    return np.concatenate(outs).astype(np.float32)


def export_onnx(
    model: torch.nn.Module,
    spec: ModelSpec,
    out_path: str | Path,
    *,
    opset: int = 17,
    features: bool = True,
) -> Path:
    """Export ``model`` to ONNX with a dynamic batch axis and write its card beside it.

    The file has one input ``input`` (N x 3 x H x W float32, normalised as ``spec`` says) and the
    outputs ``logits`` (N x C) and, with ``features``, ``features`` (N x D, the input of the model's
    last ``nn.Linear``). Weights are stored inside the file. The card is ``spec`` with the git
    commit filled in (kept when the spec already names the training commit), ``format="onnx"`` and
    the opset and export time in ``extra``.

    Args:
        model: a torch classifier taking N x 3 x H x W and returning N x C logits.
        spec: the model card; ``input_size`` and ``class_names`` must match the model.
        out_path: where to write the ``.onnx`` file (parent folders are created).
        opset: ONNX opset, at least 17.
        features: add the ``features`` output (needs a final ``nn.Linear`` head).

    Returns:
        The path of the written ``.onnx`` file.

    Raises:
        ValueError: opset below 17, the model's output does not have ``spec.num_classes`` columns, or
            ``features`` and the model has no ``nn.Linear`` head reading 2-D features.
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
    to_export: torch.nn.Module = cpu_model
    output_names = [OUTPUT_NAME]
    if features:
        to_export = with_features(cpu_model)
        with torch.no_grad():
            logits, pooled = to_export(dummy)
            head_out = classifier_head(cpu_model)(pooled) if pooled.ndim == 2 else None
        if head_out is None or not torch.allclose(head_out, logits, atol=1e-5):
            raise ValueError(
                f"the last nn.Linear of {type(model).__name__} is not the classification head "
                f"(its input has shape {tuple(pooled.shape)}); export with features=False"
            )
        output_names.append(FEATURES_NAME)

    tmp_path = out_path.with_name(out_path.name + ".tmp")
    with warnings.catch_warnings():
        # The TorchScript exporter announces its deprecation on every call; it is chosen on purpose.
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.simplefilter("ignore", category=FutureWarning)
        warnings.simplefilter("ignore", category=UserWarning)
        torch.onnx.export(
            to_export,
            (dummy,),
            str(tmp_path),
            input_names=[INPUT_NAME],
            output_names=output_names,
            opset_version=opset,
            dynamic_axes={name: {0: "batch"} for name in [INPUT_NAME, *output_names]},
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
    logger.info(
        "exported %s (%.1f KB, opset %d, outputs %s)",
        out_path,
        out_path.stat().st_size / 1024,
        opset,
        ", ".join(output_names),
    )
    return out_path


def _torch_logits(model: torch.nn.Module, batch: np.ndarray, batch_size: int) -> np.ndarray:
    import torch

    model = copy.deepcopy(model).to("cpu").eval()
    outs = []
    with torch.no_grad():
        for start in range(0, batch.shape[0], batch_size):
            outs.append(model(torch.from_numpy(batch[start : start + batch_size])).numpy())
    return np.concatenate(outs).astype(np.float32)


def _onnx_outputs(
    onnx_path: Path, batch: np.ndarray, batch_size: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """Logits and, when the file has them, the ``features``."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    logits = session.get_outputs()[0].name  # the logits come first; a ``features`` output may follow
    wanted = [logits] + [o.name for o in session.get_outputs()[1:] if o.name == FEATURES_NAME]
    outs = [
        session.run(wanted, {name: batch[start : start + batch_size]})
        for start in range(0, batch.shape[0], batch_size)
    ]
    features = np.concatenate([o[1] for o in outs]).astype(np.float32) if len(wanted) == 2 else None
    return np.concatenate([o[0] for o in outs]).astype(np.float32), features


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
    onnx_logits, onnx_features = _onnx_outputs(Path(onnx_path), batch, batch_size)
    p_onnx = softmax(onnx_logits, spec.temperature).astype(np.float32)
    features_diff = None
    if onnx_features is not None:
        features_diff = float(np.max(np.abs(torch_features(model, batch, batch_size) - onnx_features)))
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
        features_max_abs_diff=features_diff,
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
