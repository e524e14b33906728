"""The YuNet and Haar face detectors, registered as ``yunet`` and ``haar`` (``maskops.detect.registry``).

Every detector takes a BGR image and returns ``Detections`` with ``face_score`` (and, for YuNet,
five landmarks per face); ``class_id`` is ``UNCLASSIFIED`` (-2) and ``confidence`` is the face
score. Boxes are clipped to the image.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from maskops.boxes import clip_boxes as _clip
from maskops.boxes import nested_mask, nms_indices
from maskops.detect.base import DEFAULT_DETECTOR, YUNET_SINGLE, DetectorError, FaceDetector
from maskops.detect.registry import create_detector, list_detectors, register_detector
from maskops.device import onnx_providers
from maskops.types import UNCLASSIFIED, Detections

__all__ = [
    "DEFAULT_DETECTOR",
    "YUNET_SINGLE",
    "YUNET_STRIDES",
    "DetectorError",
    "FaceDetector",
    "HaarDetector",
    "YuNetDetector",
    "create_detector",
    "haar_available",
    "list_detectors",
    "register_detector",
]

YUNET_STRIDES = (8, 16, 32)
# a face at least this sure (the product's default face threshold) can make a frame a close-up
CLOSEUP_SURE_SCORE = 0.6


def _as_bgr(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be HxW, HxWx3 or HxWx4, got shape {image.shape}")
    return image


@register_detector("yunet")
class YuNetDetector(FaceDetector):
    """YuNet through ``cv2.FaceDetectorYN``.

    Args:
        model_path: the ONNX file (default ``Settings().yunet_path``, i.e. ``MASKOPS_YUNET_PATH``).
        score_threshold: minimum face score.
        nms_threshold: IoU for non-maximum suppression.
        top_k: faces kept before NMS.
        upscale: images whose longer side is below ``min_side`` are enlarged by this factor at
            most (small faces are found far more often); 1.0 disables.
        min_side: see ``upscale``.
        backend: ``onnxruntime`` (default: the same network and the same decoding as OpenCV's
            ``FaceDetectorYN``, about twice as fast on a CPU) or ``opencv`` (``cv2.FaceDetectorYN``).
        num_threads: ONNX Runtime intra-op threads (``None``: ONNX Runtime's default, one per
            core; servers running one detector per worker thread pass 1). The ``opencv`` backend
            follows ``cv2.setNumThreads``.
        closeup_side: close-ups (selfies, a face held up to a webcam) hold faces larger than YuNet's
            biggest anchors. When a frame gives no face, or a face whose longer side is at least
            ``closeup_ratio`` of the frame's shorter side (faces scored at least 0.6), a second pass runs on the frame shrunk to
            this longer side and its faces join the first pass's (NMS). 0 disables.
        closeup_ratio: see ``closeup_side``.
        nested_overlap: a face with at least this share of its area inside a face twice its size and at
            least as sure is dropped (a hit on part of a large face); 1.0 or more disables.

    Landmarks are clipped to the image like the boxes.
    """

    name = "yunet"
    BACKENDS = ("onnxruntime", "opencv")

    def __init__(
        self,
        model_path: str | Path | None = None,
        score_threshold: float = 0.6,
        nms_threshold: float = 0.3,
        top_k: int = 5000,
        upscale: float = 2.0,
        min_side: int = 640,
        backend: str = "onnxruntime",
        num_threads: int | None = None,
        closeup_side: int = 192,
        closeup_ratio: float = 0.45,
        nested_overlap: float = 0.75,
    ) -> None:
        if backend not in self.BACKENDS:
            raise DetectorError(f"unknown YuNet backend {backend!r}; valid: {', '.join(self.BACKENDS)}")
        if model_path is None:
            from maskops.config import Settings

            model_path = Settings().yunet_path
        if model_path is None or not Path(model_path).is_file():
            raise DetectorError(
                f"YuNet weights not found at {model_path or '<unset>'}: set MASKOPS_YUNET_PATH to "
                "face_detection_yunet_2026may.onnx (default ../shared/models/)"
            )
        self.model_path = Path(model_path)
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.top_k = top_k
        self.upscale = max(1.0, float(upscale))
        self.min_side = min_side
        self.backend = backend
        if closeup_side < 0 or not 0 < closeup_ratio <= 1:
            raise DetectorError(
                f"closeup_side must be >= 0 and closeup_ratio in (0, 1], got {closeup_side}, {closeup_ratio}"
            )
        self.closeup_side = int(closeup_side)
        self.closeup_ratio = float(closeup_ratio)
        self.nested_overlap = float(nested_overlap)
        self._net: Any = None
        self._session: Any = None
        # MASKOPS_DEVICE; outside the try: "cuda asked, none here" is not a weights problem
        providers = onnx_providers() if backend == "onnxruntime" else []
        try:
            if backend == "opencv":
                self._net = cv2.FaceDetectorYN.create(
                    str(self.model_path), "", (320, 320), score_threshold, nms_threshold, top_k
                )
            else:
                import onnxruntime as ort

                opts = ort.SessionOptions()
                if num_threads is not None:
                    opts.intra_op_num_threads = max(1, int(num_threads))
                opts.inter_op_num_threads = 1
                self._session = ort.InferenceSession(str(self.model_path), opts, providers=providers)
                self._input = self._session.get_inputs()[0].name
        except Exception as exc:  # cv2.error, onnxruntime's Fail/InvalidProtobuf/...
            raise DetectorError(f"YuNet weights at {self.model_path} could not be loaded: {exc}") from exc

    def _detect_ort(self, image: np.ndarray) -> np.ndarray:
        """YuNet through ONNX Runtime, decoded exactly as OpenCV's ``FaceDetectorYN`` does.

        Returns an ``(n, 15)`` float32 array: x, y, w, h, five landmarks (x, y), score.
        """
        h, w = image.shape[:2]
        pad_h, pad_w = (h - 1) // 32 * 32 + 32, (w - 1) // 32 * 32 + 32
        if (pad_h, pad_w) != (h, w):  # zero padding on the uint8 image: cheaper than on the float blob
            image = cv2.copyMakeBorder(image, 0, pad_h - h, 0, pad_w - w, cv2.BORDER_CONSTANT, value=0)
        # planes split by OpenCV, then widened to float32 one plane at a time: half the time of a
        # strided numpy transpose-and-cast, the same values
        blob = np.empty((1, 3, pad_h, pad_w), np.float32)
        for c, plane in enumerate(cv2.split(image)):
            blob[0, c] = plane
        out = self._session.run(None, {self._input: blob})
        rows: list[np.ndarray] = []
        for i, stride in enumerate(YUNET_STRIDES):
            cols = pad_w // stride
            cls = np.clip(out[i].reshape(-1), 0.0, 1.0)
            obj = np.clip(out[i + 3].reshape(-1), 0.0, 1.0)
            score = np.sqrt(cls * obj)
            keep = np.flatnonzero(score >= self.score_threshold)
            if keep.size == 0:
                continue
            r, c = (keep // cols).astype(np.float32), (keep % cols).astype(np.float32)
            bbox = out[i + 6].reshape(-1, 4)[keep]
            kps = out[i + 9].reshape(-1, 10)[keep]
            bw = np.exp(bbox[:, 2]) * stride
            bh = np.exp(bbox[:, 3]) * stride
            x1 = (c + bbox[:, 0]) * stride - bw / 2
            y1 = (r + bbox[:, 1]) * stride - bh / 2
            lm = np.empty((keep.size, 10), np.float32)
            lm[:, 0::2] = (kps[:, 0::2] + c[:, None]) * stride
            lm[:, 1::2] = (kps[:, 1::2] + r[:, None]) * stride
            rows.append(np.column_stack([x1, y1, bw, bh, lm, score[keep]]).astype(np.float32))
        if not rows:
            return np.zeros((0, 15), np.float32)
        faces = np.concatenate(rows)
        if len(faces) > 1:
            boxes = [[int(f[0]), int(f[1]), int(f[2]), int(f[3])] for f in faces]
            idx = cv2.dnn.NMSBoxes(
                boxes, faces[:, 14].tolist(), self.score_threshold, self.nms_threshold, 1.0, self.top_k
            )
            faces = faces[np.asarray(idx, np.int64).reshape(-1)]
        return faces

    def _scale_for(self, width: int, height: int) -> float:
        longer = max(width, height)
        if self.upscale <= 1.0 or longer >= self.min_side:
            return 1.0
        return min(self.upscale, self.min_side / longer)

    def _faces_at(self, image: np.ndarray, scale: float) -> np.ndarray:
        """YuNet on ``image`` resized by ``scale``: ``(n, 15)`` rows in ``image`` pixels (x, y, w, h,
        five landmarks, score)."""
        if scale != 1.0:
            height, width = image.shape[:2]
            size = (max(1, round(width * scale)), max(1, round(height * scale)))
            image = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR if scale > 1 else cv2.INTER_AREA)
        if self._session is not None:
            faces = self._detect_ort(image)
        else:
            self._net.setInputSize((image.shape[1], image.shape[0]))
            _, faces = self._net.detect(image)
        if faces is None or len(faces) == 0:
            return np.zeros((0, 15), np.float32)
        faces = np.array(faces, np.float32).reshape(-1, 15)
        faces[:, :14] /= np.float32(scale)
        return faces

    def _wants_closeup(self, faces: np.ndarray, width: int, height: int) -> bool:
        if not self.closeup_side or max(width, height) <= self.closeup_side:
            return False
        # only sure faces count: a large, weak box (at an evaluation's low threshold) is no close-up
        sure = faces[faces[:, 14] >= CLOSEUP_SURE_SCORE]
        if not len(sure):
            return True
        return float(sure[:, 2:4].max()) >= self.closeup_ratio * min(width, height)

    def detect(self, image_bgr: np.ndarray) -> Detections:
        image = _as_bgr(image_bgr)
        height, width = image.shape[:2]
        faces = self._faces_at(image, self._scale_for(width, height))
        if self._wants_closeup(faces, width, height):
            extra = self._faces_at(image, self.closeup_side / max(width, height))
            if len(extra):
                faces = np.concatenate([faces, extra])
                xyxy = np.column_stack([faces[:, :2], faces[:, :2] + faces[:, 2:4]])
                faces = faces[nms_indices(xyxy, faces[:, 14], self.nms_threshold)]
        if not len(faces):
            return Detections.empty(with_face_score=True).replace(landmarks=np.zeros((0, 5, 2), np.float32))
        xyxy = _clip(np.column_stack([faces[:, :2], faces[:, :2] + faces[:, 2:4]]), width, height)
        if self.nested_overlap < 1.0 and len(faces) > 1:
            keep = ~nested_mask(xyxy, faces[:, 14], self.nested_overlap)
            faces, xyxy = faces[keep], xyxy[keep]
        score = faces[:, 14].copy()
        landmarks = faces[:, 4:14].reshape(-1, 5, 2)
        landmarks[..., 0] = np.clip(landmarks[..., 0], 0, width)
        landmarks[..., 1] = np.clip(landmarks[..., 1], 0, height)
        return Detections(
            xyxy=xyxy,
            confidence=score,
            class_id=np.full(len(faces), UNCLASSIFIED, np.int64),
            face_score=score,
            landmarks=landmarks,
        )


def haar_available() -> bool:
    """Whether this OpenCV build has ``CascadeClassifier`` (OpenCV 5 moved it out of the main package)."""
    return hasattr(cv2, "CascadeClassifier")


@register_detector("haar")
class HaarDetector(FaceDetector):
    """OpenCV's frontal-face Haar cascade (a fallback: it misses most masked faces).

    Args:
        cascade_path: the cascade xml (default: ``haarcascade_frontalface_default.xml`` in
            ``cv2.data.haarcascades``).
        scale_factor: image pyramid step.
        min_neighbors: overlapping hits needed for a face.
        min_size: smallest face side in pixels.

    Raises:
        DetectorError: this OpenCV has no ``CascadeClassifier`` or the cascade file is missing.
    """

    name = "haar"

    def __init__(
        self,
        cascade_path: str | Path | None = None,
        scale_factor: float = 1.1,
        min_neighbors: int = 5,
        min_size: int = 20,
    ) -> None:
        if not haar_available():
            raise DetectorError(
                f"OpenCV {cv2.__version__} has no CascadeClassifier (OpenCV 5 moved Haar cascades out "
                "of the main package); use the 'yunet' detector"
            )
        data_dir = getattr(getattr(cv2, "data", None), "haarcascades", "")
        path = Path(cascade_path or Path(data_dir) / "haarcascade_frontalface_default.xml")
        if not path.is_file():
            raise DetectorError(f"Haar cascade not found at {path}")
        self._cascade = cv2.CascadeClassifier(str(path))
        if self._cascade.empty():
            raise DetectorError(f"Haar cascade could not be loaded from {path}")
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.min_size = min_size

    def detect(self, image_bgr: np.ndarray) -> Detections:
        image = _as_bgr(image_bgr)
        gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        boxes, _, weights = self._cascade.detectMultiScale3(
            gray,
            scaleFactor=self.scale_factor,
            minNeighbors=self.min_neighbors,
            minSize=(self.min_size, self.min_size),
            outputRejectLevels=True,
        )
        if len(boxes) == 0:
            return Detections.empty(with_face_score=True)
        b = np.asarray(boxes, np.float32).reshape(-1, 4)
        xyxy = np.stack([b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]], 1)
        # cascade weights are unbounded stage margins; squash them to (0, 1) as a face score
        score = (1.0 / (1.0 + np.exp(-np.asarray(weights, np.float32).reshape(-1)))).astype(np.float32)
        return Detections(
            xyxy=_clip(xyxy, image.shape[1], image.shape[0]),
            confidence=score,
            class_id=np.full(len(b), UNCLASSIFIED, np.int64),
            face_score=score,
        )
