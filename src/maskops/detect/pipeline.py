"""detect -> crop -> batch classify -> ``Detections``: the product's core job on one image.

A face is labelled ``uncertain`` (class id -1) instead of guessed when it is too small, too blurred
or too dark to judge, or when the classifier's calibrated confidence is below the card's
threshold. The thresholds come from the model card (``ModelSpec.thresholds``) and can be
overridden per call site; ``uncertain=False`` turns the rule off (every face gets its argmax).
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from maskops.boxes import expand_box
from maskops.detect.base import DEFAULT_DETECTOR, YUNET_SINGLE, FaceDetector
from maskops.detect.registry import create_detector
from maskops.inference.classifier import OnnxClassifier
from maskops.types import UNCERTAIN, Detections

logger = logging.getLogger(__name__)


# No face can be judged in a smaller image (the default min_face_px is 12), and YuNet has returned
# non-finite boxes for 1-pixel inputs: such images get zero faces, not a detector run.
MIN_DETECT_SIDE = 16

# used when the model card does not name a threshold
DEFAULT_THRESHOLDS: dict[str, float] = {
    "min_confidence": 0.5,  # calibrated top probability
    "min_face_px": 12.0,  # shorter side of the face box, in image pixels
    "min_sharpness": 15.0,  # variance of the Laplacian of the face crop resized to 64 px
    "min_brightness": 35.0,  # mean gray level 0..255 of the face crop
}


@dataclass
class PipelineConfig:
    """How faces are cut and judged.

    Attributes:
        margin: context added around each face box per side (fraction of the box), as in training.
        uncertain: label hard faces ``uncertain`` instead of guessing.
        thresholds: overrides of the card's thresholds (``min_confidence``, ``min_face_px``,
            ``min_sharpness``, ``min_brightness``).
        batch_size: crops per classifier call.
    """

    margin: float = 0.15
    uncertain: bool = True
    thresholds: dict[str, float] = field(default_factory=dict)
    batch_size: int = 64


def count_faces(class_ids: Iterable[int], class_names: Sequence[str]) -> dict[str, int]:
    """Faces per class name, plus ``uncertain`` (class id -1); every name is present, zero or not.

    The one count of the product: the API's ``counts``, the batch and ``detect`` summaries and the
    service's metrics all come from it.
    """
    names = list(class_names)
    counts = {c: 0 for c in [*names, "uncertain"]}
    for cid in class_ids:
        counts[names[cid] if 0 <= cid < len(names) else "uncertain"] += 1
    return counts


@dataclass
class FaceResult:
    """The faces of one image: what the pipeline returns to the API, the CLI and the video loop.

    Attributes:
        detections: boxes with ``class_id`` (-1 = uncertain), calibrated ``confidence`` (top
            probability), ``face_score`` and landmarks when the detector gives them.
        probs: (n, num_classes) calibrated class probabilities.
        reasons: per face, why it is uncertain (``None`` when it is not).
        timings_ms: wall time per stage (``detect``, ``classify``).
        image_size: (width, height).
        class_names: the classifier's class names, in class-id order.
        embeddings: (n, dims) float16 compact embeddings of the faces, when the classifier gives them.
    """

    detections: Detections
    probs: np.ndarray
    reasons: list[str | None]
    timings_ms: dict[str, float]
    image_size: tuple[int, int]
    class_names: tuple[str, ...] = ()
    embeddings: np.ndarray | None = None

    def counts(self) -> dict[str, int]:
        """Faces per class, plus ``uncertain`` (see ``count_faces``)."""
        return count_faces(self.detections.class_id.tolist(), self.class_names)

    def records(self, class_names: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """One JSON-ready dict per face: box, class, confidence, face score, probabilities, reason.

        ``class_names`` defaults to the result's own.
        """
        class_names = self.class_names if class_names is None else class_names
        out = []
        for i, rec in enumerate(self.detections.to_records(list(class_names))):
            rec["probabilities"] = {
                c: round(float(p), 4) for c, p in zip(class_names, self.probs[i], strict=True)
            }
            if self.reasons[i]:
                rec["uncertain_reason"] = self.reasons[i]
            out.append(rec)
        return out


def detector_factory(
    name: str = DEFAULT_DETECTOR,
    *,
    face_threshold: float | None = None,
    num_threads: int | None = None,
    yunet_path: str | Path | None = None,
    options: Mapping[str, Any] | None = None,
) -> Callable[[], FaceDetector]:
    """The one way the service and the CLI configure face detectors: a function that builds a new
    detector each call (detectors keep per-call state: one per worker thread, see ``ThreadDetectors``).

    Args:
        name: a registered detector (``maskops.detect.list_detectors()``).
        face_threshold: minimum face score (the detector's ``score_threshold``; ``None``: its own).
        num_threads: YuNet's ONNX Runtime threads (``None``: one per core); YuNet-based names only.
        yunet_path: YuNet weights (``None``: ``MASKOPS_YUNET_PATH``); YuNet-based names only.
        options: further keyword arguments of the detector; they win over the ones above.

    Calling the factory raises ``DetectorError`` (unknown name, missing weights) or ``TypeError``
    (an option the detector does not take).
    """
    kwargs: dict[str, Any] = {}
    if name in YUNET_SINGLE:
        if yunet_path is not None:
            kwargs["model_path"] = yunet_path
        if num_threads is not None:
            kwargs["num_threads"] = num_threads
    if face_threshold is not None:
        kwargs["score_threshold"] = face_threshold
    kwargs.update(options or {})
    return functools.partial(create_detector, name, **kwargs)


class ThreadDetectors:
    """One detector per thread, built by ``factory`` on the thread's first call.

    ``cv2.FaceDetectorYN`` is not thread-safe, so a worker pool (the service's, ``BatchDetector``'s)
    never shares one. ``first``, an already built detector, goes to the first thread that asks.
    """

    def __init__(self, factory: Callable[[], FaceDetector], first: FaceDetector | None = None) -> None:
        self.factory = factory
        self._first = first
        self._local = threading.local()
        self._lock = threading.Lock()

    def get(self) -> FaceDetector:
        """This thread's detector."""
        det: FaceDetector | None = getattr(self._local, "detector", None)
        if det is None:
            with self._lock:
                det, self._first = self._first, None
            if det is None:
                det = self.factory()
            self._local.detector = det
        return det


def face_quality(crop_bgr: np.ndarray) -> tuple[float, float]:
    """(sharpness, brightness) of a face crop: Laplacian variance at 64 px, mean gray level."""
    gray = cv2.cvtColor(crop_bgr, cv2.COLOR_BGR2GRAY) if crop_bgr.ndim == 3 else crop_bgr
    if gray.size == 0:
        return 0.0, 0.0
    small = cv2.resize(gray, (64, 64), interpolation=cv2.INTER_AREA)
    # OpenCV's reductions: the values of numpy's var() and mean(), at a fraction of the call cost
    _, std = cv2.meanStdDev(cv2.Laplacian(small, cv2.CV_64F))
    return float(std[0, 0]) ** 2, float(cv2.mean(gray)[0])


def as_bgr(image: np.ndarray) -> np.ndarray:
    """Gray, BGR or BGRA uint8 -> 3-channel BGR (alpha dropped)."""
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 1:
        return cv2.cvtColor(image[:, :, 0], cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    raise ValueError(f"image must be HxW, HxWx1, HxWx3 or HxWx4 uint8, got shape {image.shape}")


class FaceMaskPipeline:
    """Find every face and say whether it wears a mask.

    Args:
        classifier: the face-crop classifier (its card gives classes, preprocessing, thresholds).
        detector: a face detector (default: ``yunet``).
        config: crop and uncertainty settings.

    Thread safety: ``__call__`` may run from several threads when the detector is not shared;
    ``cv2.FaceDetectorYN`` keeps per-call state, so give each worker thread its own pipeline or
    detector (``clone()``).
    """

    def __init__(
        self,
        classifier: OnnxClassifier,
        detector: FaceDetector | None = None,
        config: PipelineConfig | None = None,
    ) -> None:
        self.classifier = classifier
        self.detector = detector if detector is not None else create_detector(DEFAULT_DETECTOR)
        self.config = config or PipelineConfig()
        self.thresholds = {**DEFAULT_THRESHOLDS, **classifier.spec.thresholds, **self.config.thresholds}

    @classmethod
    def from_paths(
        cls,
        model_path: str | Path,
        *,
        detector: str = DEFAULT_DETECTOR,
        detector_options: dict[str, Any] | None = None,
        config: PipelineConfig | None = None,
        num_threads: int | None = 1,
    ) -> FaceMaskPipeline:
        """Load the classifier file and create the named detector.

        ``num_threads`` is the classifier's ONNX Runtime thread count (``None``: one per core). One
        thread is the default: a few small face crops run fastest on one thread while the detector
        uses the cores (640x480 frames: 14.7 ms per frame vs 21.6 ms with both on every core).

        Raises:
            ModelLoadError: the classifier cannot be loaded.
            DetectorError / ValueError: unknown detector or missing weights.
        """
        clf = OnnxClassifier(model_path, num_threads=num_threads)
        return cls(clf, detector_factory(detector, options=detector_options)(), config)

    @property
    def class_names(self) -> list[str]:
        return self.classifier.class_names

    def clone(self, detector: FaceDetector) -> FaceMaskPipeline:
        """A pipeline sharing this classifier (thread-safe) with its own detector."""
        return FaceMaskPipeline(self.classifier, detector, self.config)

    def crops(self, image_bgr: np.ndarray, faces: Detections) -> list[np.ndarray]:
        """Face crops with the configured margin (at least 1x1 pixel each)."""
        h, w = image_bgr.shape[:2]
        out = []
        for box in faces.xyxy:
            x1, y1, x2, y2 = expand_box(box, self.config.margin, w, h)
            x2, y2 = max(x2, min(w, x1 + 1)), max(y2, min(h, y1 + 1))
            out.append(image_bgr[y1:y2, x1:x2])
        return out

    def classify_faces(self, image_bgr: np.ndarray, faces: Detections) -> FaceResult:
        """Classify given face boxes (from a detector, a tracker or ground truth) of one image."""
        image = as_bgr(image_bgr)
        h, w = image.shape[:2]
        t0 = time.perf_counter()
        n = len(faces)
        k = len(self.class_names)
        names = tuple(self.class_names)
        if n == 0:
            return FaceResult(
                faces.replace(class_id=np.zeros(0, np.int64), confidence=np.zeros(0, np.float32)),
                np.zeros((0, k), np.float32),
                [],
                {"classify": 0.0},
                (w, h),
                names,
            )
        crops = self.crops(image, faces)
        bs = self.config.batch_size
        # a duck-typed classifier with predict_proba only (test doubles) gives no embeddings
        with_embedding = getattr(self.classifier, "predict_with_embedding", None)
        if with_embedding is not None:
            probs, embeddings = with_embedding(crops, batch_size=bs)
        else:
            probs, embeddings = self.classifier.predict_proba(crops, batch_size=bs).astype(np.float32), None
        class_id = probs.argmax(1).astype(np.int64)
        confidence = probs.max(1).astype(np.float32)
        reasons: list[str | None] = [None] * n
        if self.config.uncertain:
            t = self.thresholds
            sides = np.minimum(faces.xyxy[:, 2] - faces.xyxy[:, 0], faces.xyxy[:, 3] - faces.xyxy[:, 1])
            for i, crop in enumerate(crops):
                sharp, bright = face_quality(crop)
                if sides[i] < t["min_face_px"]:
                    reasons[i] = f"face {sides[i]:.0f} px < {t['min_face_px']:g} px"
                elif bright < t["min_brightness"]:
                    reasons[i] = f"too dark (brightness {bright:.0f} < {t['min_brightness']:g})"
                elif sharp < t["min_sharpness"]:
                    reasons[i] = f"too blurred (sharpness {sharp:.1f} < {t['min_sharpness']:g})"
                elif confidence[i] < t["min_confidence"]:
                    reasons[i] = f"low confidence {confidence[i]:.2f} < {t['min_confidence']:g}"
                if reasons[i]:
                    class_id[i] = UNCERTAIN
        timings = {"classify": (time.perf_counter() - t0) * 1000.0}
        return FaceResult(
            faces.replace(class_id=class_id, confidence=confidence),
            probs,
            reasons,
            timings,
            (w, h),
            names,
            embeddings,
        )

    def __call__(self, image_bgr: np.ndarray) -> FaceResult:
        """Detect and classify every face of one image (gray, BGR or BGRA uint8, any size).

        An image with a side under ``MIN_DETECT_SIDE`` pixels has no face (the detector is not run).
        """
        image = as_bgr(image_bgr)
        t0 = time.perf_counter()
        if min(image.shape[:2]) < MIN_DETECT_SIDE:
            faces = Detections.empty(with_face_score=True)
        else:
            faces = self.detector.detect(image)
        detect_ms = (time.perf_counter() - t0) * 1000.0
        result = self.classify_faces(image, faces)
        result.timings_ms = {"detect": detect_ms, **result.timings_ms}
        return result

    def summary(self, results: Sequence[FaceResult]) -> dict[str, Any]:
        """Faces per class (and ``uncertain``) over many results, and the compliance rate.

        Compliance = ``with_mask`` / faces with a decided class (uncertain faces excluded);
        ``None`` when no face was decided.
        """
        names = self.class_names
        counts = count_faces((int(c) for r in results for c in r.detections.class_id), names)
        decided = sum(counts[c] for c in names)
        first = names[0]
        return {
            "images": len(results),
            "faces": decided + counts["uncertain"],
            "per_class": counts,
            "compliance_rate": (counts[first] / decided) if decided else None,
        }
