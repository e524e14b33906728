"""A learned second stage on face proposals: box regression and face/not-face rescoring.

YuNet finds nearly every face of facemask-voc (98% of faces at IoU 0.3) but frames small faces loosely,
so many fall under IoU 0.5. The refiner looks at a square crop around each proposal (``context`` times
the box's longer side, resized to ``size`` pixels) and predicts

* the offsets ``(tx, ty, tw, th)`` from the proposal to the true box
  (``tx = (gx - x) / w``, ``ty = (gy - y) / h`` on centres, ``tw = log(gw / w)``, ``th = log(gh / h)``),
* a face logit (is this proposal on a true face, IoU >= 0.3),
* class logits (with_mask, without_mask, mask_weared_incorrect; used only for experiments).

It is a small CNN trained with torch on the ``train`` split (``maskops.detect.refine_train``,
``bench/train_refiner.py``) and run here with ONNX Runtime, so serving needs no torch. The weights
(``data/refine_<base>.onnx``) and their settings (``data/refine_<base>.json``) ship in the package.
Registered as ``yunet_refine``: proposals from ``yunet_ms_cal`` at a low score, refined, rescored and
merged with NMS.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from maskops.detect.detectors import DetectorError, FaceDetector, _as_bgr, create_detector, register_detector
from maskops.detect.multiscale import nms
from maskops.types import Detections

logger = logging.getLogger(__name__)

__all__ = [
    "REFINER_DIR",
    "BoxRefiner",
    "RefinedDetector",
    "RefinerSpec",
    "crop_proposals",
    "decode_boxes",
    "encode_boxes",
]

REFINER_DIR = Path(__file__).resolve().parent / "data"
_CLIP_LOG = float(np.log(4.0))


@dataclass
class RefinerSpec:
    """How proposals are cut for the refiner and how its output is used (saved beside the ONNX file).

    Attributes:
        size: crop side in pixels (network input is ``(n, 3, size, size)`` RGB, ``(x - 127.5) / 128``).
        context: crop side as a multiple of the proposal's longer side.
        base: detector giving the proposals, and its options.
        proposal_score: minimum proposal face score.
        nms_iou: NMS on refined boxes.
        score_mix: final face score = ``sigmoid(face_logit) ** (1 - mix) * proposal_score ** mix``.
        class_names: the class head's classes.
        trained_on: description of the training data.
        metrics: validation figures of the training run.
    """

    size: int = 48
    context: float = 2.0
    base: str = "yunet_ms_cal"
    base_options: dict[str, Any] = field(default_factory=lambda: {"scales": [1.5, 3.0]})
    proposal_score: float = 0.05
    nms_iou: float = 0.45
    score_mix: float = 0.0
    class_names: list[str] = field(
        default_factory=lambda: ["with_mask", "without_mask", "mask_weared_incorrect"]
    )
    trained_on: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def load(cls, path: str | Path) -> RefinerSpec:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"refiner settings not found: {path}")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON: {exc}") from exc
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{path}: unknown fields {unknown}; expected some of {sorted(known)}")
        return cls(**data)


def crop_regions(boxes: np.ndarray, context: float) -> np.ndarray:
    """(n, 4) square regions ``x1, y1, x2, y2`` centred on each box, side ``context * longer side``."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    cx = (b[:, 0] + b[:, 2]) / 2
    cy = (b[:, 1] + b[:, 3]) / 2
    half = np.maximum(np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]), 2.0) * context / 2
    return np.stack([cx - half, cy - half, cx + half, cy + half], 1)


def crop_proposals(image_bgr: np.ndarray, boxes: np.ndarray, size: int, context: float) -> np.ndarray:
    """(n, size, size, 3) uint8 RGB crops of the proposal regions (zero padding outside the image).

    Each crop is an affine warp of its region, so regions partly outside the image keep their geometry.
    """
    regions = crop_regions(boxes, context)
    out = np.zeros((len(regions), size, size, 3), np.uint8)
    rgb = cv2.cvtColor(_as_bgr(image_bgr), cv2.COLOR_BGR2RGB)
    for i, (x1, y1, x2, _y2) in enumerate(regions):
        s = size / max(x2 - x1, 1e-6)
        m = np.array([[s, 0, -x1 * s], [0, s, -y1 * s]], np.float64)
        interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
        out[i] = cv2.warpAffine(rgb, m, (size, size), flags=interp, borderMode=cv2.BORDER_CONSTANT)
    return out


def encode_boxes(proposals: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """(n, 4) regression targets ``(tx, ty, tw, th)`` from proposals to their target boxes."""
    p = np.asarray(proposals, np.float64).reshape(-1, 4)
    g = np.asarray(targets, np.float64).reshape(-1, 4)
    w = np.maximum(p[:, 2] - p[:, 0], 1e-6)
    h = np.maximum(p[:, 3] - p[:, 1], 1e-6)
    gw = np.maximum(g[:, 2] - g[:, 0], 1e-6)
    gh = np.maximum(g[:, 3] - g[:, 1], 1e-6)
    tx = ((g[:, 0] + g[:, 2]) - (p[:, 0] + p[:, 2])) / 2 / w
    ty = ((g[:, 1] + g[:, 3]) - (p[:, 1] + p[:, 3])) / 2 / h
    return np.stack([tx, ty, np.log(gw / w), np.log(gh / h)], 1).astype(np.float32)


def decode_boxes(proposals: np.ndarray, deltas: np.ndarray) -> np.ndarray:
    """Inverse of ``encode_boxes`` (log scales clipped to [1/4, 4])."""
    p = np.asarray(proposals, np.float64).reshape(-1, 4)
    d = np.asarray(deltas, np.float64).reshape(-1, 4)
    w = p[:, 2] - p[:, 0]
    h = p[:, 3] - p[:, 1]
    cx = (p[:, 0] + p[:, 2]) / 2 + d[:, 0] * w
    cy = (p[:, 1] + p[:, 3]) / 2 + d[:, 1] * h
    w2 = w * np.exp(np.clip(d[:, 2], -_CLIP_LOG, _CLIP_LOG)) / 2
    h2 = h * np.exp(np.clip(d[:, 3], -_CLIP_LOG, _CLIP_LOG)) / 2
    return np.stack([cx - w2, cy - h2, cx + w2, cy + h2], 1).astype(np.float32)


def to_input(crops: np.ndarray) -> np.ndarray:
    """(n, S, S, 3) uint8 RGB -> (n, 3, S, S) float32 network input."""
    return ((crops.astype(np.float32) - 127.5) / 128.0).transpose(0, 3, 1, 2).copy()


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


class BoxRefiner:
    """The refiner network (ONNX Runtime) and its settings.

    Args:
        model_path: the ``.onnx`` file; its settings ``.json`` beside it.
        num_threads: ONNX Runtime intra-op threads (default: ORT's choice).

    Raises:
        DetectorError: missing or unloadable files.
    """

    def __init__(self, model_path: str | Path, num_threads: int | None = None) -> None:
        import onnxruntime as ort

        model_path = Path(model_path)
        if not model_path.is_file():
            raise DetectorError(
                f"refiner weights not found at {model_path} (train them with `python bench/train_refiner.py`)"
            )
        try:
            self.spec = RefinerSpec.load(model_path.with_suffix(".json"))
        except (FileNotFoundError, ValueError, TypeError) as exc:
            raise DetectorError(f"refiner settings for {model_path}: {exc}") from exc
        opts = ort.SessionOptions()
        if num_threads:
            opts.intra_op_num_threads = num_threads
        try:
            self._session = ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise DetectorError(f"refiner weights at {model_path} could not be loaded: {exc}") from exc
        self._input = self._session.get_inputs()[0].name
        self.model_path = model_path

    def __call__(
        self, image_bgr: np.ndarray, boxes: np.ndarray, batch_size: int = 256
    ) -> dict[str, np.ndarray]:
        """Refined boxes, face probability and class probabilities of each proposal box."""
        n = len(boxes)
        k = len(self.spec.class_names)
        if n == 0:
            return {
                "xyxy": np.zeros((0, 4), np.float32),
                "face": np.zeros(0, np.float32),
                "probs": np.zeros((0, k)),
            }
        crops = crop_proposals(image_bgr, boxes, self.spec.size, self.spec.context)
        outs = []
        for s in range(0, n, batch_size):
            outs.append(self._session.run(None, {self._input: to_input(crops[s : s + batch_size])})[0])
        raw = np.concatenate(outs).astype(np.float64)
        logits = raw[:, 5 : 5 + k]
        e = np.exp(logits - logits.max(1, keepdims=True))
        return {
            "xyxy": decode_boxes(boxes, raw[:, :4]),
            "face": _sigmoid(raw[:, 4]).astype(np.float32),
            "probs": (e / e.sum(1, keepdims=True)).astype(np.float32),
        }


class RefinedDetector(FaceDetector):
    """Proposals from a base detector, refined and rescored by a ``BoxRefiner``, then NMS.

    Args:
        refiner: the refiner network.
        base: the proposal detector (default: the one named in the refiner's settings, with a low score).
        nms_iou, score_mix: override the refiner settings' values.
        score_threshold: drop refined faces under this final score (0 keeps all, as AP wants).
    """

    name = "yunet_refine"

    def __init__(
        self,
        refiner: BoxRefiner,
        base: FaceDetector | None = None,
        nms_iou: float | None = None,
        score_mix: float | None = None,
        score_threshold: float = 0.0,
    ) -> None:
        spec = refiner.spec
        self.refiner = refiner
        self.base = base or create_detector(
            spec.base, score_threshold=spec.proposal_score, **spec.base_options
        )
        self.nms_iou = spec.nms_iou if nms_iou is None else nms_iou
        self.score_mix = spec.score_mix if score_mix is None else score_mix
        self.score_threshold = score_threshold
        self.last_probs: np.ndarray | None = None

    def detect(self, image_bgr: np.ndarray) -> Detections:
        image = _as_bgr(image_bgr)
        h, w = image.shape[:2]
        props = self.base.detect(image)
        if not len(props):
            self.last_probs = np.zeros((0, len(self.refiner.spec.class_names)), np.float32)
            return props
        out = self.refiner(image, props.xyxy)
        prop_score = props.face_score if props.face_score is not None else props.confidence
        mix = float(self.score_mix)
        score = (out["face"] ** (1 - mix) * np.clip(prop_score, 1e-6, 1) ** mix).astype(np.float32)
        xyxy = out["xyxy"]
        xyxy[:, [0, 2]] = np.clip(xyxy[:, [0, 2]], 0, w)
        xyxy[:, [1, 3]] = np.clip(xyxy[:, [1, 3]], 0, h)
        faces = Detections(
            xyxy=xyxy,
            confidence=score,
            class_id=np.full(len(score), -1, np.int64),
            face_score=score,
            landmarks=props.landmarks,
        )
        order = np.arange(len(faces))
        kept = nms(faces.replace(track_id=order), self.nms_iou)
        kept = kept[kept.confidence >= self.score_threshold]
        assert kept.track_id is not None
        self.last_probs = out["probs"][kept.track_id]
        return kept.replace(track_id=None)


def refiner_path(base: str = "yunet_ms_cal") -> Path:
    """The packaged refiner weights for proposals of ``base``."""
    return REFINER_DIR / f"refine_{base}.onnx"


@register_detector("yunet_refine")
def _yunet_refine(
    model_path: str | Path | None = None, num_threads: int | None = None, **kwargs: Any
) -> RefinedDetector:
    return RefinedDetector(BoxRefiner(model_path or refiner_path(), num_threads=num_threads), **kwargs)
