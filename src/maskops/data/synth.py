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
from typing import TYPE_CHECKING, Any, Literal

import cv2
import numpy as np

from maskops.config import PLACEMENT_LABELS, SynthConfig
from maskops.data.crops import encode_png, pixel_sha256, write_atomic
from maskops.data.manifest import ManifestRow

if TYPE_CHECKING:  # the detector is passed in; data/ does not load maskops.detect
    from maskops.detect.base import FaceDetector

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


@dataclass(frozen=True)
class Geometry:
    """Where the wrong placements may sit (``SynthConfig``'s ``under_nose_top`` and ``side_lift``).

    Attributes:
        under_nose_top: the range of an ``under_nose`` mask's top edge, as a share of the way from
            the nose tip (0) to the mouth (1).
        side_lift: a wrong mask's top corners ride up to this share of the nose depth higher than
            its middle (a mask pulled down under the nose rides up the cheeks to the ear loops).
    """

    under_nose_top: tuple[float, float] = (0.2, 0.6)
    side_lift: float = 0.0


DEFAULT_GEOMETRY = Geometry()


@dataclass(frozen=True)
class MaskShape:
    """A mask's extent in its face's axes (pixels; depths below the eye line, widths from the middle).

    Attributes:
        placement: where it sits.
        top: depth of the top edge (its middle rises by a small arch, its corners by ``lift``).
        bottom: depth of the lowest point, under the chin.
        half_top: half the width of the top edge.
        half_mid: half the width round the chin.
        lift: how much higher than ``top`` the top edge's corners sit (0 unless ``Geometry.side_lift``).
    """

    placement: Placement
    top: float
    bottom: float
    half_top: float
    half_mid: float
    lift: float = 0.0


def mask_shape(
    frame: FaceFrame, placement: Placement, rng: np.random.Generator, geometry: Geometry = DEFAULT_GEOMETRY
) -> MaskShape:
    """A random mask extent for one placement (see the module docstring)."""
    m, n, ed = frame.mouth, frame.nose, frame.eye_dist
    chin = m * rng.uniform(1.55, 1.8)
    if placement == "correct":
        top = n * rng.uniform(0.35, 0.65)
    elif placement == "under_nose":
        top = n + (m - n) * rng.uniform(*geometry.under_nose_top)
    elif placement == "chin":
        top = m + (chin - m) * rng.uniform(0.25, 0.45)
    else:
        raise ValueError(f"unknown placement {placement!r}; expected one of {sorted(PLACEMENT_LABELS)}")
    half_top = ed * rng.uniform(0.95, 1.15)
    half_mid = ed * rng.uniform(0.9, 1.05)
    bottom = chin + m * rng.uniform(0.0, 0.12)
    lift = 0.0
    if placement != "correct" and geometry.side_lift > 0:  # drawn only then: the default draws are kept
        lift = n * rng.uniform(0.0, geometry.side_lift)
    return MaskShape(placement, float(top), float(bottom), float(half_top), float(half_mid), float(lift))


def shape_polygon(frame: FaceFrame, shape: MaskShape) -> np.ndarray:
    """The outline of ``shape`` in image pixels, (n, 2) float32: 9 top-edge points left to right first."""
    m, n = frame.mouth, frame.nose
    top, half_top = shape.top, shape.half_top
    # top edge: a gentle arch (higher in the middle over a covered nose, flat otherwise)
    xs = np.linspace(-half_top, half_top, 9)
    arch = (n * 0.12 if shape.placement == "correct" else m * 0.03) * (1.0 - (xs / half_top) ** 2)
    top_edge = np.stack([xs, top - arch - shape.lift * (xs / half_top) ** 2], 1)
    # sides straight down to the mouth line, then a half ellipse round the chin
    centre_y = max(top, m) + 0.1 * m
    theta = np.linspace(0.0, np.pi, 13)
    chin_arc = np.stack(
        [shape.half_mid * np.cos(theta), centre_y + (shape.bottom - centre_y) * np.sin(theta)], 1
    )
    outline = np.concatenate([top_edge, chin_arc])  # top edge left -> right, then chin right -> left
    return frame.to_image(outline[:, 0], outline[:, 1]).astype(np.float32)


def mask_polygon(
    frame: FaceFrame, placement: Placement, rng: np.random.Generator, geometry: Geometry = DEFAULT_GEOMETRY
) -> np.ndarray:
    """The mask's outline in image pixels, (n, 2) float32, for one placement."""
    return shape_polygon(frame, mask_shape(frame, placement, rng, geometry))


def _check_bgr(name: str, image: np.ndarray) -> None:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"{name} must be HxWx3 uint8 BGR, got {image.shape} {image.dtype}")


def _polygon_alpha(poly: np.ndarray, h: int, w: int) -> np.ndarray:
    """The (h, w) float32 coverage of ``poly`` (anti-aliased, drawn at 8x sub-pixel precision)."""
    alpha = np.zeros((h, w), np.float32)
    cv2.fillPoly(alpha, [np.round(poly * 8).astype(np.int32)], 1.0, lineType=cv2.LINE_AA, shift=3)
    if not alpha.any():
        raise ValueError("the mask falls outside the image")
    return alpha


def _light(gray: np.ndarray, where: np.ndarray) -> float:
    """Mean brightness of ``gray`` where ``where`` holds (128 when nowhere)."""
    return float(gray[where].mean()) if where.any() else 128.0


def _blend(
    image_bgr: np.ndarray, layer: np.ndarray, alpha: np.ndarray, frame: FaceFrame
) -> tuple[np.ndarray, np.ndarray]:
    """``layer`` over ``image_bgr`` (float32) through ``alpha`` feathered to the face's size; also the feathered alpha."""
    alpha = cv2.GaussianBlur(alpha, (0, 0), max(0.6, 0.02 * frame.eye_dist))
    return image_bgr.astype(np.float32) * (1.0 - alpha[:, :, None]) + layer * alpha[:, :, None], alpha


def draw_mask(
    image_bgr: np.ndarray,
    landmarks: np.ndarray,
    placement: Placement,
    rng: np.random.Generator,
    geometry: Geometry = DEFAULT_GEOMETRY,
) -> np.ndarray:
    """A copy of ``image_bgr`` (uint8 BGR) with a mask painted on the face.

    The mask gets a random colour, the face's brightness, a soft shading across the face, surgical
    pleats half the time, ear loops, grain and a feathered edge.

    Raises:
        ValueError: unusable landmarks (see ``face_frame``) or not a BGR uint8 image.
    """
    _check_bgr("image", image_bgr)
    frame = face_frame(landmarks)
    h, w = image_bgr.shape[:2]
    poly = mask_polygon(frame, placement, rng, geometry)
    alpha = _polygon_alpha(poly, h, w)

    colour = np.asarray(MASK_COLOURS[int(rng.integers(len(MASK_COLOURS)))], np.float32)
    colour = np.clip(colour + rng.normal(0.0, 12.0, 3), 0, 255)
    # take the face's light: mean brightness of the skin above the mask
    gray = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY).astype(np.float32)
    face_light = _light(gray, alpha < 0.5)
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

    out, _ = _blend(image_bgr, layer, alpha, frame)
    if rng.random() < 0.7:
        _ear_loops(out, frame, poly, colour * 0.9, rng)
    return np.clip(out, 0, 255).astype(np.uint8)


def _ear_loops(
    out: np.ndarray, frame: FaceFrame, poly: np.ndarray, colour: np.ndarray, rng: np.random.Generator
) -> None:
    """Draws (in place) ear loops from the mask's top corners towards the ears."""
    loop = tuple(float(c) for c in colour)
    thick = max(1, round(0.05 * frame.eye_dist))
    for k in (0, 8):
        start = poly[k]
        a = (-1.0 if k == 0 else 1.0) * frame.eye_dist * rng.uniform(1.2, 1.5)
        end = frame.to_image(np.array([a]), np.array([frame.nose * rng.uniform(0.3, 0.9)]))[0]
        cv2.line(out, tuple(np.round(start).astype(int)), tuple(np.round(end).astype(int)), loop, thick)


# the band of a correctly worn mask that is fabric on nearly every face: from halfway down the
# nose to under the mouth, across the cheeks (depths in nose / mouth units, width in eye distances)
FABRIC_TOP_NOSE = 0.6
FABRIC_BOTTOM_MOUTH = 1.3
FABRIC_HALF_WIDTH = 0.75


def transplant_mask(
    image_bgr: np.ndarray,
    landmarks: np.ndarray,
    donor_bgr: np.ndarray,
    donor_landmarks: np.ndarray,
    placement: Placement,
    rng: np.random.Generator,
    geometry: Geometry = DEFAULT_GEOMETRY,
) -> np.ndarray:
    """A copy of ``image_bgr`` wearing the real mask of another face (``donor_bgr``, masked correctly).

    The donor's fabric band (between its nose and its chin, ``FABRIC_*``) is warped by the affine
    map of the two faces' axes onto the outline ``mask_shape`` draws for ``placement``, matched to
    the face's brightness and blended with a feathered edge, so the texture, folds and print are a
    real mask's and only the placement is made up.

    Raises:
        ValueError: unusable landmarks on either face (see ``face_frame``) or not BGR uint8 images.
    """
    _check_bgr("image", image_bgr)
    _check_bgr("donor", donor_bgr)
    frame = face_frame(landmarks)
    donor_frame = face_frame(donor_landmarks)
    shape = mask_shape(frame, placement, rng, geometry)
    poly = shape_polygon(frame, shape)
    h, w = image_bgr.shape[:2]
    alpha = _polygon_alpha(poly, h, w)

    # shrink a larger donor first: the affine warp alone would alias its fabric
    scale = shape.half_top / (FABRIC_HALF_WIDTH * donor_frame.eye_dist)  # eye_dist >= 1 (face_frame)
    donor = donor_bgr
    donor_lm = np.asarray(donor_landmarks, np.float64)
    if scale < 0.7:
        dh, dw = donor.shape[:2]
        size = (max(1, round(dw * scale)), max(1, round(dh * scale)))
        donor = cv2.resize(donor, size, interpolation=cv2.INTER_AREA)
        donor_lm = donor_lm * np.array([size[0] / dw, size[1] / dh])
        donor_frame = face_frame(donor_lm)
    d_top = FABRIC_TOP_NOSE * donor_frame.nose
    d_bottom = FABRIC_BOTTOM_MOUTH * donor_frame.mouth
    d_half = FABRIC_HALF_WIDTH * donor_frame.eye_dist
    flip = bool(rng.random() < 0.5)  # the donor's fabric mirrored half the time
    src = donor_frame.to_image(np.array([-d_half, d_half, 0.0]), np.array([d_top, d_top, d_bottom]))
    side = np.array([shape.half_top, -shape.half_top] if flip else [-shape.half_top, shape.half_top])
    top = shape.top - shape.lift  # the band's top edge at the lifted corners: fabric all over
    dst = frame.to_image(np.array([side[0], side[1], 0.0]), np.array([top, top, shape.bottom]))
    warp = cv2.getAffineTransform(src.astype(np.float32), dst.astype(np.float32))
    layer = cv2.warpAffine(donor, warp, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)

    # the face's light: the skin above the mask here, the eyes and forehead above the donor's band
    gray = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY).astype(np.float32)
    donor_gray = cv2.cvtColor(donor, cv2.COLOR_BGR2GRAY).astype(np.float32)
    ys = np.arange(donor.shape[0], dtype=np.float32)[:, None]
    xs = np.arange(donor.shape[1], dtype=np.float32)[None, :]
    depth = (xs - donor_frame.origin[0]) * donor_frame.down[0] + (
        ys - donor_frame.origin[1]
    ) * donor_frame.down[1]
    gain = _light(gray, alpha < 0.5) / max(_light(donor_gray, depth < 0.3 * donor_frame.nose), 1.0)
    layer = layer.astype(np.float32) * float(np.clip(gain, 0.6, 1.6) ** 0.7)

    out, alpha = _blend(image_bgr, layer, alpha, frame)
    if rng.random() < 0.5:
        inside = alpha > 0.5
        colour = layer[inside].mean(0) * 0.9 if inside.any() else np.full(3, 200.0, np.float32)
        _ear_loops(out, frame, poly, colour, rng)
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


def _usable_faces(
    rows: Sequence[ManifestRow],
    label: str,
    config: SynthConfig,
    detector: FaceDetector,
    limit: int | None = None,
) -> tuple[list[tuple[ManifestRow, np.ndarray, np.ndarray]], int, Counter[str]]:
    """``train`` crops of ``label`` (no synthetic ones) of at least ``min_face_px`` with usable landmarks.

    Returns the faces (row, image, landmarks) in sha256 order, at most ``limit`` of them, the number
    of candidates, and why the others were skipped.
    """
    candidates = sorted(
        (r for r in rows if r.split == "train" and r.label == label and not r.source.startswith("synth")),
        key=lambda r: r.sha256,
    )
    usable: list[tuple[ManifestRow, np.ndarray, np.ndarray]] = []
    skipped: Counter[str] = Counter()
    for r in candidates:
        if limit is not None and len(usable) >= limit:
            break
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
    return usable, len(candidates), skipped


def synthesize_rows(
    rows: Sequence[ManifestRow],
    out_dir: Path,
    config: SynthConfig,
    detector: FaceDetector,
    classes: Sequence[str],
) -> tuple[list[ManifestRow], dict[str, Any]]:
    """Put masks on ``config.from_label`` training crops; returns the new rows and a summary.

    Sources are the ``train`` rows of ``from_label`` whose crop's shorter side is at least
    ``min_face_px`` and whose landmarks the detector finds. Each placement takes ``count`` of them
    (a source serves one placement; when there are too few, they are reused with another draw).
    A ``real_texture`` share of the crops wears the fabric of a real mask (``transplant_mask``) cut
    from one of the first ``max_donors`` usable ``train`` crops of ``texture_label`` (in sha256
    order); the others get a painted one (``draw_mask``).
    The new crops go to ``<out_dir>/synth/<placement>/`` with source ``synth_<placement>:<source>``;
    each row keeps its source's group (so a synthetic face never crosses splits) and names the
    source crop as ``parent``. The output depends only on the rows, the config and the detector,
    not on their order.
    """
    for placement in config.placements:
        label = PLACEMENT_LABELS[placement]
        if label not in classes:
            raise ValueError(
                f"synthetic placement {placement!r} gives label {label!r}, not a task class {list(classes)}"
            )
    if config.real_texture > 0 and config.texture_label not in classes:
        raise ValueError(
            f"synthetic texture_label {config.texture_label!r} is not a task class {list(classes)}"
        )
    geometry = Geometry(config.under_nose_top, config.side_lift)
    usable, n_candidates, skipped = _usable_faces(rows, config.from_label, config, detector)
    donors: list[tuple[ManifestRow, np.ndarray, np.ndarray]] = []
    summary: dict[str, Any] = {"candidates": n_candidates, "usable": len(usable)}
    if config.real_texture > 0:
        donors, n_donor_candidates, _ = _usable_faces(
            rows, config.texture_label, config, detector, limit=config.max_donors
        )
        summary["texture_donors"] = len(donors)
        if not donors:
            raise ValueError(
                f"synthetic real_texture {config.real_texture}: none of the {n_donor_candidates} train crops of "
                f"{config.texture_label!r} is at least {config.min_face_px} px with landmarks the detector finds"
            )
    out: list[ManifestRow] = []
    made: Counter[str] = Counter()
    textured: Counter[str] = Counter()
    if not usable:
        return out, {**summary, "skipped": dict(skipped), "made": {}}
    order = np.random.default_rng(config.seed).permutation(len(usable))
    cursor = 0
    for placement, count in sorted(config.placements.items()):
        for k in range(count):
            pass_no, pos = divmod(cursor + k, len(usable))  # pass_no > 0: a source reused
            r, image, lm = usable[order[pos]]
            key = f"{r.sha256}:{placement}:{pass_no}"
            rng = row_rng(config.seed, key)
            donor = None
            if donors:
                pick = row_rng(config.seed, f"{key}:texture")
                if pick.random() < config.real_texture:
                    donor = donors[int(pick.integers(len(donors)))]
            try:
                if donor is None:
                    masked = draw_mask(image, lm, placement, rng, geometry)
                else:
                    masked = transplant_mask(image, lm, donor[1], donor[2], placement, rng, geometry)
            except ValueError:
                skipped["draw_failed"] += 1
                continue
            rel = Path("synth") / placement / f"{Path(r.path).stem}_{pass_no}.png"
            write_atomic(out_dir / rel, encode_png(masked))
            out.append(
                ManifestRow(
                    path=str(out_dir / rel),
                    sha256=pixel_sha256(masked),
                    label=PLACEMENT_LABELS[placement],
                    split="train",
                    group=r.group,
                    source=f"synth_{placement}:{r.source}",
                    parent=r.path,
                    box="",
                )
            )
            made[placement] += 1
            if donor is not None:
                textured[placement] += 1
        cursor += count
    summary.update(skipped=dict(skipped), made=dict(made))
    if donors:
        summary["real_texture"] = dict(textured)
    return out, summary
