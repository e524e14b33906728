"""Loading the face-mask pipeline for ``maskops detect`` and ``maskops watch``: defaults and errors.

A missing model or an unusable detector is one clear message on stderr and exit code 2.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from maskops.detect.base import FaceDetector
    from maskops.detect.pipeline import FaceMaskPipeline

MODEL_FILE = "facemask.onnx"

# the detector score cut of ``detect`` and ``watch`` (``face_threshold_of`` merges the two)
FACE_THRESHOLD = typer.Option(
    None, "--face-threshold", min=0.0, max=1.0, help="Minimum face-detector score (default: the detector's)."
)
DEPRECATED_THRESHOLD = typer.Option(
    None, "--threshold", min=0.0, max=1.0, hidden=True, help="Deprecated name of --face-threshold."
)


def default_model_path() -> Path:
    """``<models_dir>/facemask.onnx`` (``MASKOPS_MODELS_DIR``, default ``models/`` of the repo)."""
    from maskops.config import Settings

    return Settings().models_dir / MODEL_FILE


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print ``error: message`` on stderr and return the ``typer.Exit`` to raise."""
    from rich.console import Console

    Console(stderr=True, soft_wrap=True).print(f"[red]error:[/red] {message}", highlight=False, markup=True)
    return typer.Exit(code=code)


def face_threshold_of(face_threshold: float | None, threshold: float | None) -> float | None:
    """``--face-threshold``, or the deprecated ``--threshold`` (with a warning)."""
    if threshold is not None:
        import logging

        logging.getLogger(__name__).warning("--threshold is deprecated: use --face-threshold")
    return face_threshold if face_threshold is not None else threshold


def _quiet_opencv() -> None:
    """OpenCV's own warnings (e.g. about DNN targets) go to stderr unasked; keep them for ``-v``."""
    import logging

    import cv2

    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


def load_pipeline(
    model: Path | None,
    *,
    detector: str,
    face_threshold: float | None,
    uncertain: bool,
    min_confidence: float | None,
    num_threads: int | None,
    detector_threads: int | None,
) -> tuple[FaceMaskPipeline, Callable[[], FaceDetector]]:
    """The pipeline and a factory of further detectors (one per worker thread).

    ``face_threshold`` is the detector's minimum face score, ``min_confidence`` the class
    confidence below which a face is uncertain. ``num_threads`` is the classifier's ONNX Runtime
    thread count, ``detector_threads`` YuNet's (``None``: one per core).

    Raises:
        typer.Exit: code 2 with the reason on stderr (missing model, bad card, unknown detector).
    """
    from rich.markup import escape

    from maskops.detect.base import DetectorError
    from maskops.detect.pipeline import FaceMaskPipeline, PipelineConfig, detector_factory
    from maskops.inference.classifier import ModelLoadError, OnnxClassifier

    _quiet_opencv()
    path = model or default_model_path()
    if not path.is_file():
        raise fail(
            f"face-mask model not found at {escape(str(path))}. Train and ship it with "
            "`maskops train --task facemask --ship` (writes models/facemask.onnx and its "
            "card facemask.json), set MASKOPS_MODELS_DIR to a folder holding facemask.onnx, or pass "
            "--model PATH."
        )
    make_detector = detector_factory(detector, face_threshold=face_threshold, num_threads=detector_threads)
    try:
        classifier = OnnxClassifier(path, num_threads=num_threads)
        first = make_detector()
    except ModelLoadError as exc:
        raise fail(escape(str(exc))) from exc
    except TypeError as exc:  # the detector takes no score_threshold
        raise fail(
            f"--face-threshold is not supported by the {detector!r} detector ({escape(str(exc))})"
        ) from exc
    except DetectorError as exc:
        raise fail(escape(str(exc))) from exc
    thresholds = {} if min_confidence is None else {"min_confidence": min_confidence}
    config = PipelineConfig(uncertain=uncertain, thresholds=thresholds)
    return FaceMaskPipeline(classifier, first, config), make_detector
