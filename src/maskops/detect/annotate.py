"""Drawing detections on images: one small annotator, colour per class."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from maskops.types import Detections

# BGR colours: green = mask, red = no mask, orange = worn incorrectly, grey = uncertain
DEFAULT_COLORS: dict[str, tuple[int, int, int]] = {
    "with_mask": (60, 180, 75),
    "without_mask": (48, 48, 230),
    "mask_weared_incorrect": (0, 140, 255),
    "uncertain": (160, 160, 160),
}
_PALETTE = [(180, 119, 31), (14, 127, 255), (44, 160, 44), (40, 39, 214), (189, 103, 148)]


class BoxAnnotator:
    """Draws each detection's box and a ``label confidence`` tag; returns a new image.

    Args:
        class_names: names in class-id order; class id -1 is drawn as ``uncertain``.
        colors: optional per-name BGR colours (defaults cover the face-mask classes).
        show_track_id: prefix labels with ``#id`` when the detections carry track ids.
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
        return self.class_names[class_id] if 0 <= class_id < len(self.class_names) else "uncertain"

    def color(self, class_id: int) -> tuple[int, int, int]:
        name = self.label(class_id)
        return self.colors.get(name, _PALETTE[class_id % len(_PALETTE)])

    def annotate(self, scene: np.ndarray, detections: Detections) -> np.ndarray:
        """Return a copy of ``scene`` (BGR uint8) with the detections drawn on it."""
        out = scene.copy() if scene.ndim == 3 else cv2.cvtColor(scene, cv2.COLOR_GRAY2BGR)
        h, w = out.shape[:2]
        thickness = max(1, round(min(h, w) / 320))
        font_scale = max(0.35, min(h, w) / 1200)
        for i in range(len(detections)):
            x1, y1, x2, y2 = np.rint(detections.xyxy[i]).astype(int).tolist()
            cid = int(detections.class_id[i])
            color = self.color(cid)
            cv2.rectangle(out, (x1, y1), (x2, y2), color, thickness, cv2.LINE_8)
            text = f"{self.label(cid)} {float(detections.confidence[i]):.2f}"
            if self.show_track_id and detections.track_id is not None:
                text = f"#{int(detections.track_id[i])} {text}"
            (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
            ty = y1 - 2 if y1 - th - base - 2 >= 0 else min(h - 1, y2 + th + base + 2)
            cv2.rectangle(out, (x1, ty - th - base), (min(w - 1, x1 + tw + 2), ty + 1), color, -1)
            cv2.putText(
                out,
                text,
                (x1 + 1, ty - base + 1),
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
