"""The face detector registry: ``@register_detector(name)`` and the one factory ``create_detector``.

Follows ``maskops.models._registry``: a module-level dict of factories; the shipped detectors are
imported the first time a name is looked up, so importing the registry loads no detector module and
the detector modules can import the registry without a cycle.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from maskops.detect.base import DetectorError, FaceDetector

log = logging.getLogger(__name__)

__all__ = ["create_detector", "list_detectors", "register_detector"]

_REGISTRY: dict[str, Callable[..., FaceDetector]] = {}
# modules whose import registers the shipped detectors
_BUILTIN = ("maskops.detect.detectors", "maskops.detect.boxcal", "maskops.detect.multiscale")
D = TypeVar("D", bound=Callable[..., FaceDetector])


def register_detector(name: str) -> Callable[[D], D]:
    """Class/factory decorator adding a detector under ``name`` (a re-registration warns)."""

    def deco(factory: D) -> D:
        if name in _REGISTRY:
            log.warning("face detector %r registered again; the new one replaces the old", name)
        _REGISTRY[name] = factory
        return factory

    return deco


def list_detectors() -> list[str]:
    """Registered detector names, sorted."""
    _load_builtin()
    return sorted(_REGISTRY)


def create_detector(name: str, **kwargs: Any) -> FaceDetector:
    """Build a registered detector.

    Raises:
        DetectorError: unknown name (the message lists the valid ones) or the detector's own error.
    """
    _load_builtin()
    if name not in _REGISTRY:
        raise DetectorError(f"unknown face detector {name!r}; valid: {', '.join(list_detectors())}")
    return _REGISTRY[name](**kwargs)


def _load_builtin() -> None:
    for module in _BUILTIN:
        importlib.import_module(module)
