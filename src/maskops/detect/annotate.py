"""Drawing detections on images: one small annotator, colour per class."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from maskops.types import UNCLASSIFIED, Detections

# BGR colours: green = mask, red = no mask, orange = worn incorrectly, grey = uncertain
DEFAULT_COLORS: dict[str, tuple[int, int, int]] = {
    "with_mask": (60, 180, 75),
    "without_mask": (48, 48, 230),
    "mask_weared_incorrect": (0, 140, 255),
    "uncertain": (160, 160, 160),
    "face": (200, 200, 200),  # not classified (a detector's output)
}
_PALETTE = [(180, 119, 31), (14, 127, 255), (44, 160, 44), (40, 39, 214), (189, 103, 148)]


Rect = tuple[int, int, int, int]  # x, y, w, h


def _overlaps(a: Rect, b: Rect) -> bool:
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


def place_tag(box: Sequence[int], w: int, h: int, width: int, height: int, placed: Sequence[Rect]) -> Rect:
    """Where a ``w`` x ``h`` tag goes for ``box``: above it, else below, else inside its top edge.

    The tag always lies inside the ``width`` x ``height`` image and clear of the tags ``placed``
    before it (moved down, then up, a tag height at a time, until it is); only when there is no
    room left does it overlap one. The web app's ``drawFaces`` places its tags the same way.
    """
    x1, y1, _, y2 = box
    x = max(0, min(x1, width - w))

    def fits(y: int) -> bool:
        return y >= 0 and y + h <= height

    def free(r: Rect) -> bool:
        return not any(_overlaps(r, p) for p in placed)

    candidates = [y for y in (y1 - h, y2, y1) if fits(y)] or [max(0, min(y1, height - h))]
    for y in candidates:
        if free((x, y, w, h)):
            return x, y, w, h
    start = candidates[0]
    for step in range(1, height // max(h, 1) + 1):
        for y in (start + step * h, start - step * h):
            if fits(y) and free((x, y, w, h)):
                return x, y, w, h
    return x, start, w, h


class BoxAnnotator:
    """Draws each detection's box and a tag: ``label confidence``, or ``uncertain: reason``.

    Args:
        class_names: names in class-id order; ``UNCERTAIN`` (-1) is drawn as ``uncertain``,
            ``UNCLASSIFIED`` (-2, a detector's output) as ``face``.
        colors: optional per-name BGR colours (defaults cover the face-mask classes).
        show_track_id: prefix tags with ``#id`` when the detections carry track ids.
    """

    def __init__(
        self,
        class_names: Sequence[str],
        colors: dict[str, tuple[int, int, int]] | None = None,
        *,
        show_track_id: bool = True,
    ) -> None:
        self.class_names = list(class_names)
        self.colors = {**DEFAULT_COLORS, **(colors or {})}
        self.show_track_id = show_track_id

    def label(self, class_id: int) -> str:
        """The class name; ``face`` for a face not classified yet, else ``uncertain``."""
        if 0 <= class_id < len(self.class_names):
            return self.class_names[class_id]
        return "face" if class_id == UNCLASSIFIED else "uncertain"

    def color(self, class_id: int) -> tuple[int, int, int]:
        name = self.label(class_id)
        return self.colors.get(name, _PALETTE[class_id % len(_PALETTE)])

    def text(self, class_id: int, confidence: float, reason: str | None = None) -> str:
        """A face's tag: class and confidence, or for an uncertain face why (its guess's confidence
        would read as certainty)."""
        name = self.label(class_id)
        if name == "uncertain":
            short = (reason or "").split(" (")[0]
            return f"uncertain: {short}" if short else "uncertain"
        return f"{name} {confidence:.2f}"

    def annotate(
        self, scene: np.ndarray, detections: Detections, reasons: Sequence[str | None] | None = None
    ) -> np.ndarray:
        """Return a copy of ``scene`` (BGR uint8) with the detections drawn on it.

        Boxes are drawn first and tags on top, each inside the image and clear of the others.
        ``reasons`` (per detection, as ``FaceResult.reasons``) is shown on uncertain faces.
        """
        out = scene.copy() if scene.ndim == 3 else cv2.cvtColor(scene, cv2.COLOR_GRAY2BGR)
        h, w = out.shape[:2]
        thickness = max(1, round(min(h, w) / 320))
        font_scale = max(0.35, min(h, w) / 1200)
        boxes = np.rint(detections.xyxy).astype(int).tolist() if len(detections) else []
        for i, (x1, y1, x2, y2) in enumerate(boxes):
            color = self.color(int(detections.class_id[i]))
            cv2.rectangle(out, (x1, y1), (x2, y2), color, thickness, cv2.LINE_8)
        placed: list[Rect] = []
        # top-to-bottom, left-to-right: the tags of a row of faces settle in reading order
        for i in sorted(range(len(boxes)), key=lambda k: (boxes[k][1], boxes[k][0])):
            cid = int(detections.class_id[i])
            text = self.text(cid, float(detections.confidence[i]), reasons[i] if reasons else None)
            if self.show_track_id and detections.track_id is not None:
                text = f"#{int(detections.track_id[i])} {text}"
            (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
            tag = place_tag(boxes[i], min(w, tw + 4), th + base + 4, w, h, placed)
            placed.append(tag)
            x, y, tag_w, tag_h = tag
            cv2.rectangle(out, (x, y), (x + tag_w - 1, y + tag_h - 1), self.color(cid), -1)
            cv2.putText(
                out,
                text,
                (x + 2, y + tag_h - base - 2),
                cv2.FONT_HERSHEY_SIMPLEX,
                font_scale,
                (255, 255, 255),
                1,
                cv2.LINE_AA,
            )
        return out

    def overlay_text(self, scene: np.ndarray, lines: Sequence[str]) -> np.ndarray:
        """Write status lines (FPS, per-stage timings) in the top-left corner on a darkened band, in place.

        A band rather than a thick black outline under thin white text: on OpenCV 5 the advance of a
        glyph grows with the stroke thickness, so the outline and the text drift apart.
        """
        if not lines:
            return scene
        font, scale, step = cv2.FONT_HERSHEY_SIMPLEX, 0.5, 20
        width = max(cv2.getTextSize(line, font, scale, 1)[0][0] for line in lines) + 14
        band = scene[: min(scene.shape[0], step * len(lines) + 8), : min(scene.shape[1], width)]
        band[:] = (band.astype(np.uint16) * 2 // 5).astype(np.uint8)
        y = 18
        for line in lines:
            cv2.putText(scene, line, (7, y), font, scale, (255, 255, 255), 1, cv2.LINE_AA)
            y += step
        return scene
