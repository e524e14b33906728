"""What every layer may know about face detectors: the interface, its error and the default name.

Imports nothing else from ``maskops.detect`` (nor numpy or OpenCV at run time), so data, evaluation,
serving and the CLI can name a detector without loading one.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: importing this module loads neither numpy nor OpenCV
    import numpy as np

    from maskops.types import Detections

__all__ = ["DEFAULT_DETECTOR", "YUNET_SINGLE", "DetectorError", "FaceDetector"]

# the face pipeline's detector: YuNet with the box calibration fitted on facemask-voc + facemask-ilc2021 train (same
# speed; framing as annotated, which the classifier was trained on; bench/detection_map.py). The
# service, `maskops detect`, `maskops watch` and `maskops evaluate --detection` default to it.
DEFAULT_DETECTOR = "yunet_cal"
# detectors built on one YuNetDetector that take its ``model_path`` and ``num_threads`` options
YUNET_SINGLE = ("yunet", "yunet_cal")


class DetectorError(ValueError):
    """A detector that cannot be built: unknown name, missing or corrupt weights."""


class FaceDetector(ABC):
    """Finds faces in a BGR image."""

    name: str = ""

    @abstractmethod
    def detect(self, image_bgr: np.ndarray) -> Detections:
        """Faces in ``image_bgr`` (H, W, 3 uint8) as ``Detections`` in image pixels."""
