"""Synthetic masks drawn on unmasked faces: more ``mask_weared_incorrect`` examples.

The face-mask data has 82 training crops of a mask worn wrongly (mostly under the nose) against
thousands of correct masks; the classifier misses most of the rare class. This module paints a
mask on a ``without_mask`` face from its five landmarks (YuNet order: right eye, left eye, nose
tip, right and left mouth corner), in one of three placements:

- ``correct``: the top edge on the nose bridge, nose and mouth covered (labelled ``with_mask``);
- ``under_nose``: the top edge between the nose tip and the mouth, the nose visible;
- ``chin``: the top edge below the mouth, only the chin covered.

Both wrong placements are ``mask_weared_incorrect``. Drawing correct masks the same way too keeps
the rendering from being a cue of its own: the only difference the classifier can learn between
synthetic classes is where the mask sits relative to the nose.

Every function is pure given its ``numpy.random.Generator``.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

from maskops.config import PLACEMENT_LABELS, SynthConfig
from maskops.data.crops import encode_png, pixel_sha256, write_atomic
from maskops.data.manifest import ManifestRow
from maskops.detect.detectors import FaceDetector

Placement = Literal["correct", "under_nose", "chin"]

# BGR base colours: surgical blue, white, black, grey, navy, pink, light green
MASK_COLOURS: tuple[tuple[int, int, int], ...] = (
    (215, 190, 140),
    (235, 235, 235),
    (35, 35, 35),
    (140, 140, 140),
    (95, 55, 35),
    (190, 170, 225),
    (190, 220, 185),
)


@dataclass(frozen=True)
class FaceFrame:
    """A face's own axes from its landmarks.

    Attributes:
        origin: the midpoint of the eyes (x, y).
        across: unit vector from the right eye to the left eye (image x for an upright face).
        down: unit vector from the eyes towards the mouth.
        eye_dist: distance between the eyes (pixels).
        nose: the nose tip's distance below the eyes along ``down`` (pixels).
        mouth: the mouth corners' mean distance below the eyes along ``down`` (pixels).
    """

    origin: np.ndarray
    across: np.ndarray
    down: np.ndarray
    eye_dist: float
    nose: float
    mouth: float

    def to_image(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Points ``a`` along ``across`` and ``b`` along ``down`` (pixels) -> (n, 2) image x, y."""
        return self.origin[None, :] + a[:, None] * self.across[None, :] + b[:, None] * self.down[None, :]


def face_frame(landmarks: np.ndarray) -> FaceFrame:
    """The face's axes from five (x, y) landmarks.

    Raises:
        ValueError: not a (5, 2) array, or a degenerate face (eyes on top of each other, the mouth
            not below the nose, ...).
    """
    lm = np.asarray(landmarks, np.float64)
    if lm.shape != (5, 2) or not np.all(np.isfinite(lm)):
        raise ValueError(f"landmarks must be a finite (5, 2) array, got shape {lm.shape}")
    eye_r, eye_l, nose, mouth_r, mouth_l = lm
    eye_vec = eye_l - eye_r
    eye_dist = float(np.hypot(*eye_vec))
    if eye_dist < 1.0:
        raise ValueError(f"eyes {eye_dist:.2f} px apart: not a usable face")
    origin = (eye_r + eye_l) / 2.0
    mouth_c = (mouth_r + mouth_l) / 2.0
    down = mouth_c - origin
    # orthogonalise "down" against the eye line (a tilted head keeps a right angle)
    across = eye_vec / eye_dist
    down = down - float(down @ across) * across
    norm = float(np.hypot(*down))
    if norm < 0.3 * eye_dist:
        raise ValueError("mouth too close to the eye line: not a frontal face")
    down /= norm
    nose_d = float((nose - origin) @ down)
    mouth_d = float((mouth_c - origin) @ down)
    if not 0.15 * mouth_d < nose_d < 0.95 * mouth_d:
        raise ValueError(f"nose ({nose_d:.1f} px) is not between the eyes and the mouth ({mouth_d:.1f} px)")
    return FaceFrame(origin, across, down, eye_dist, nose_d, mouth_d)


def mask_polygon(frame: FaceFrame, placement: Placement, rng: np.random.Generator) -> np.ndarray:
    """The mask's outline in image pixels, (n, 2) float32, for one placement."""
    m, n, ed = frame.mouth, frame.nose, frame.eye_dist
    chin = m * rng.uniform(1.55, 1.8)
    if placement == "correct":
        top = n * rng.uniform(0.35, 0.65)
    elif placement == "under_nose":
        top = n + (m - n) * rng.uniform(0.2, 0.6)
    elif placement == "chin":
        top = m + (chin - m) * rng.uniform(0.25, 0.45)
    else:
        raise ValueError(f"unknown placement {placement!r}; expected one of {sorted(PLACEMENT_LABELS)}")
    half_top = ed * rng.uniform(0.95, 1.15)
    half_mid = ed * rng.uniform(0.9, 1.05)
    bottom = chin + m * rng.uniform(0.0, 0.12)
    # top edge: a gentle arch (higher in the middle over a covered nose, flat otherwise)
    xs = np.linspace(-half_top, half_top, 9)
    arch = (n * 0.12 if placement == "correct" else m * 0.03) * (1.0 - (xs / half_top) ** 2)
    top_edge = np.stack([xs, top - arch], 1)
    # sides straight down to the mouth line, then a half ellipse round the chin
    side_y = max(top, m) + 0.1 * m
    theta = np.linspace(0.0, np.pi, 13)
    centre_y = side_y
    chin_arc = np.stack([half_mid * np.cos(theta), centre_y + (bottom - centre_y) * np.sin(theta)], 1)
    outline = np.concatenate([top_edge, chin_arc])  # top edge left -> right, then chin right -> left
    return frame.to_image(outline[:, 0], outline[:, 1]).astype(np.float32)


def draw_mask(
    image_bgr: np.ndarray, landmarks: np.ndarray, placement: Placement, rng: np.random.Generator
) -> np.ndarray:
    """A copy of ``image_bgr`` (uint8 BGR) with a mask painted on the face.

    The mask gets a random colour, the face's brightness, a soft shading across the face, surgical
    pleats half the time, ear loops, grain and a feathered edge.

    Raises:
        ValueError: unusable landmarks (see ``face_frame``) or not a BGR uint8 image.
    """
    if image_bgr.ndim != 3 or image_bgr.shape[2] != 3 or image_bgr.dtype != np.uint8:
        raise ValueError(f"image must be HxWx3 uint8 BGR, got {image_bgr.shape} {image_bgr.dtype}")
    frame = face_frame(landmarks)
    h, w = image_bgr.shape[:2]
    poly = mask_polygon(frame, placement, rng)
    scale = 8  # draw at 8x sub-pixel precision (shift=3)
    pts = np.round(poly * scale).astype(np.int32)
    alpha = np.zeros((h, w), np.float32)
    cv2.fillPoly(alpha, [pts], 1.0, lineType=cv2.LINE_AA, shift=3)
    if not alpha.any():
        raise ValueError("the mask falls outside the image")

    colour = np.asarray(MASK_COLOURS[int(rng.integers(len(MASK_COLOURS)))], np.float32)
    colour = np.clip(colour + rng.normal(0.0, 12.0, 3), 0, 255)
    # take the face's light: mean brightness of the skin above the mask
    gray = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY).astype(np.float32)
    face_light = float(gray[alpha < 0.5].mean()) if (alpha < 0.5).any() else 128.0
    colour *= float(np.clip((face_light / 140.0) ** 0.7, 0.35, 1.15))

    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    rel = (xs - frame.origin[0]) * frame.across[0] + (ys - frame.origin[1]) * frame.across[1]
    side = rng.choice([-1.0, 1.0])
    shade = 1.0 - 0.18 * np.clip(side * rel / (1.2 * frame.eye_dist), -1.0, 1.0) ** 2
    layer = colour[None, None, :] * shade[:, :, None]
    if rng.random() < 0.5:  # surgical pleats: darker bands parallel to the mouth line
        depth = (xs - frame.origin[0]) * frame.down[0] + (ys - frame.origin[1]) * frame.down[1]
        period = frame.mouth * rng.uniform(0.28, 0.4)
        pleat = 1.0 - 0.12 * (np.cos(2 * np.pi * depth / period) > 0.7)
        layer *= pleat[:, :, None]
    layer += rng.normal(0.0, 3.0, layer.shape).astype(np.float32)

    feather = max(0.6, 0.02 * frame.eye_dist)
    alpha = cv2.GaussianBlur(alpha, (0, 0), feather)
    out = image_bgr.astype(np.float32) * (1.0 - alpha[:, :, None]) + layer * alpha[:, :, None]
    if rng.random() < 0.7:  # ear loops from the top corners towards the ears
        loop = tuple(float(c) * 0.9 for c in colour)
        thick = max(1, round(0.05 * frame.eye_dist))
        for k in (0, 8):
            start = poly[k]
            a = (-1.0 if k == 0 else 1.0) * frame.eye_dist * rng.uniform(1.2, 1.5)
            end = frame.to_image(np.array([a]), np.array([frame.nose * rng.uniform(0.3, 0.9)]))[0]
            cv2.line(out, tuple(np.round(start).astype(int)), tuple(np.round(end).astype(int)), loop, thick)
    return np.clip(out, 0, 255).astype(np.uint8)


def crop_landmarks(crop_bgr: np.ndarray, detector: FaceDetector, work_px: int = 160) -> np.ndarray | None:
    """The five landmarks of the main face of a face crop, in crop pixels; ``None`` if none is found.

    The crop is enlarged to ``work_px`` (longer side) and padded by 30% with its own edge, so a
    face that fills the crop is still whole for the detector; the face nearest the crop's centre
    among the two best scores wins.
    """
    h, w = crop_bgr.shape[:2]
    s = max(1.0, work_px / max(h, w))
    big = cv2.resize(crop_bgr, (round(w * s), round(h * s)), interpolation=cv2.INTER_LINEAR)
    pad = round(0.3 * max(big.shape[:2]))
    padded = cv2.copyMakeBorder(big, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    faces = detector.detect(padded)
    if len(faces) == 0 or faces.landmarks is None:
        return None
    order = np.argsort(-np.asarray(faces.face_score if faces.face_score is not None else faces.confidence))[
        :2
    ]
    centre = np.array([padded.shape[1] / 2.0, padded.shape[0] / 2.0])
    mids = (faces.xyxy[order, :2] + faces.xyxy[order, 2:]) / 2.0
    best = int(order[int(np.argmin(np.hypot(*(mids - centre).T)))])
    return ((faces.landmarks[best] - pad) / s).astype(np.float32)


def row_rng(seed: int, key: str) -> np.random.Generator:
    """A generator that depends only on ``seed`` and ``key`` (a row's sha256): order-free output."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def synthesize_rows(
    rows: Sequence[ManifestRow],
    out_dir: Path,
    config: SynthConfig,
    detector: FaceDetector,
    classes: Sequence[str],
) -> tuple[list[ManifestRow], dict[str, Any]]:
    """Paint masks on ``config.from_label`` training crops; returns the new rows and a summary.

    Sources are the ``train`` rows of ``from_label`` whose crop's shorter side is at least
    ``min_face_px`` and whose landmarks the detector finds. Each placement takes ``count`` of them
    (a source serves one placement; when there are too few, they are reused with another draw).
    The new crops go to ``<out_dir>/synth/<placement>/`` with source ``synth_<placement>:<source>``;
    each row keeps its source's group (so a synthetic face never crosses splits) and names the source crop as ``parent``. The output
    depends only on the rows, the config and the detector, not on their order.
    """
    for placement in config.placements:
        label = PLACEMENT_LABELS[placement]
        if label not in classes:
            raise ValueError(
                f"synthetic placement {placement!r} gives label {label!r}, not a task class {list(classes)}"
            )
    candidates = sorted(
        (
            r
            for r in rows
            if r.split == "train" and r.label == config.from_label and not r.source.startswith("synth")
        ),
        key=lambda r: r.sha256,
    )
    usable: list[tuple[ManifestRow, np.ndarray, np.ndarray]] = []
    skipped: Counter[str] = Counter()
    for r in candidates:
        image = cv2.imread(r.path, cv2.IMREAD_COLOR)
        if image is None:
            skipped["unreadable"] += 1
            continue
        if min(image.shape[:2]) < config.min_face_px:
            skipped["small"] += 1
            continue
        lm = crop_landmarks(image, detector)
        if lm is None:
            skipped["no_landmarks"] += 1
            continue
        try:
            face_frame(lm)
        except ValueError:
            skipped["not_frontal"] += 1
            continue
        usable.append((r, image, lm))
    out: list[ManifestRow] = []
    made: Counter[str] = Counter()
    if not usable:
        return out, {"candidates": len(candidates), "usable": 0, "skipped": dict(skipped), "made": {}}
    order = np.random.default_rng(config.seed).permutation(len(usable))
    cursor = 0
    for placement, count in sorted(config.placements.items()):
        for k in range(count):
            pass_no, pos = divmod(cursor + k, len(usable))  # pass_no > 0: a source reused
            r, image, lm = usable[order[pos]]
            rng = row_rng(config.seed, f"{r.sha256}:{placement}:{pass_no}")
            try:
                painted = draw_mask(image, lm, placement, rng)  # type: ignore[arg-type]
            except ValueError:
                skipped["draw_failed"] += 1
                continue
            rel = Path("synth") / placement / f"{Path(r.path).stem}_{pass_no}.png"
            write_atomic(out_dir / rel, encode_png(painted))
            out.append(
                ManifestRow(
                    path=str(out_dir / rel),
                    sha256=pixel_sha256(painted),
                    label=PLACEMENT_LABELS[placement],
                    split="train",
                    group=r.group,
                    source=f"synth_{placement}:{r.source}",
                    parent=r.path,
                    box="",
                )
            )
            made[placement] += 1
        cursor += count
    summary = {
        "candidates": len(candidates),
        "usable": len(usable),
        "skipped": dict(skipped),
        "made": dict(made),
    }
    return out, summary
