"""Face detection: the detector interface and registry, the detectors, the detect-then-classify pipeline.

``maskops.detect.base`` (the interface, ``DetectorError``, ``DEFAULT_DETECTOR``) and
``maskops.detect.registry`` (``create_detector``) load no detector; the names below are imported on
first use so ``import maskops.detect.base`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "DEFAULT_DETECTOR",
    "DetectorError",
    "FaceDetector",
    "HaarDetector",
    "YuNetDetector",
    "create_detector",
    "haar_available",
    "list_detectors",
    "register_detector",
]

_WHERE = {
    "DEFAULT_DETECTOR": "maskops.detect.base",
    "DetectorError": "maskops.detect.base",
    "FaceDetector": "maskops.detect.base",
    "HaarDetector": "maskops.detect.detectors",
    "YuNetDetector": "maskops.detect.detectors",
    "create_detector": "maskops.detect.registry",
    "haar_available": "maskops.detect.detectors",
    "list_detectors": "maskops.detect.registry",
    "register_detector": "maskops.detect.registry",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'maskops.detect' has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)


def __dir__() -> list[str]:
    return sorted(__all__)
