"""Model registry and backbones (needs torch; imported only by the training side)."""

from maskops.models._registry import (
    UnknownModelError,
    create_model,
    list_models,
    model_options,
    register_model,
)

__all__ = ["UnknownModelError", "create_model", "list_models", "model_options", "register_model"]
