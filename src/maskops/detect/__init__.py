"""Face detection: the detector registry (YuNet, Haar); later the detect-then-classify pipeline."""

from maskops.detect.detectors import (
    DetectorError,
    FaceDetector,
    HaarDetector,
    YuNetDetector,
    create_detector,
    haar_available,
    list_detectors,
    register_detector,
)

__all__ = [
    "DetectorError",
    "FaceDetector",
    "HaarDetector",
    "YuNetDetector",
    "create_detector",
    "haar_available",
    "list_detectors",
    "register_detector",
]
