"""The model registry: ``@register_model`` builders and the one factory ``create_model``.

Follows timm: a module-level dict of builder functions; every model is built through
``create_model(name, num_classes, ...)`` so trainers and tests never import a backbone directly.
"""

from __future__ import annotations

import inspect
import logging
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

logger = logging.getLogger(__name__)

_MODELS: dict[str, Callable[..., Any]] = {}

F = TypeVar("F", bound=Callable[..., Any])


class UnknownModelError(ValueError):
    """Raised for a model name that no builder is registered under."""


def register_model(fn: F) -> F:
    """Register a builder under its function name (warns when a name is overwritten).

    The builder takes ``(num_classes: int, pretrained: bool = True, **kwargs)`` and returns a
    ``torch.nn.Module`` whose forward maps an N×3×H×W normalised float batch to N×C logits.
    """
    name = fn.__name__
    if name in _MODELS:
        warnings.warn(f"model {name!r} is already registered; overwriting it", stacklevel=2)
    _MODELS[name] = fn
    return fn


def list_models() -> list[str]:
    """The registered model names, sorted."""
    _load_builtin()
    return sorted(_MODELS)


def create_model(name: str, num_classes: int, pretrained: bool = True, **kwargs: Any) -> Any:
    """Build a registered model.

    Args:
        name: a name from ``list_models()``.
        num_classes: size of the classifier head.
        pretrained: load the backbone's pretrained weights when it has any.
        **kwargs: builder-specific options (e.g. ``input_size``).

    Returns:
        The ``torch.nn.Module``.

    Raises:
        UnknownModelError: (a ValueError) for an unknown name; the message lists the valid names.
        ValueError: ``num_classes`` < 2.
    """
    builder = _builder(name)
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    logger.debug("building model %s (num_classes=%d, pretrained=%s)", name, num_classes, pretrained)
    return builder(num_classes=num_classes, pretrained=pretrained, **kwargs)


def model_options(name: str) -> list[str]:
    """The builder-specific keyword options of a registered model (beyond ``num_classes`` and
    ``pretrained``), sorted.

    Raises:
        UnknownModelError: for an unknown name.
    """
    params = inspect.signature(_builder(name)).parameters.values()
    return sorted(
        p.name
        for p in params
        if p.name not in ("num_classes", "pretrained") and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    )


def _builder(name: str) -> Callable[..., Any]:
    """The registered builder of ``name``; ``UnknownModelError`` lists the valid names."""
    _load_builtin()
    if name not in _MODELS:
        raise UnknownModelError(f"unknown model {name!r}; valid models: {', '.join(sorted(_MODELS))}")
    return _MODELS[name]


def _load_builtin() -> None:
    # Builders import torch; import them only when a model is actually asked for.
    from maskops.models import efficientnet, tiny_cnn  # noqa: F401
