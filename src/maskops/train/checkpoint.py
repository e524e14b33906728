"""Checkpoints: save/load the full training state and rebuild a model from a file.

A checkpoint is a dict with ``model_state``, ``spec`` (``ModelSpec.to_dict()``), ``config`` (the
resolved ``TrainConfig`` as JSON-ready dict), ``epoch`` (epochs completed), ``best_metric``,
``optimizer_state``, ``scheduler_state``, ``rng`` and ``model_kwargs``. Everything in it is
plain containers, tensors and numbers, so it loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from maskops.types import ModelSpec

logger = logging.getLogger(__name__)


class CheckpointError(ValueError):
    """A checkpoint file that is missing or not a maskops checkpoint."""


def capture_rng() -> dict[str, Any]:
    """The python, numpy and torch global RNG states as weights-only-loadable values."""
    py = random.getstate()
    np_state = cast(tuple[Any, ...], np.random.get_state())  # the legacy tuple (default)
    return {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": [
            np_state[0],
            torch.from_numpy(np.asarray(np_state[1]).astype(np.int64)),
            int(np_state[2]),
            int(np_state[3]),
            float(np_state[4]),
        ],
        "torch": torch.get_rng_state(),
    }


def restore_rng(state: dict[str, Any]) -> None:
    """Restore what ``capture_rng`` captured."""
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"])


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` atomically (temp file + rename), so an interrupt never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint dict (weights only: no code is executed).

    Raises:
        CheckpointError: the file is missing or is not a maskops checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a bad file
        raise CheckpointError(f"{path}: not a loadable torch checkpoint: {exc}") from exc
    missing = [k for k in ("model_state", "spec") if not isinstance(state, dict) or k not in state]
    if missing:
        raise CheckpointError(f"{path}: not a maskops checkpoint (missing {missing})")
    return state


def load_model(path: str | Path) -> tuple[torch.nn.Module, ModelSpec]:
    """Rebuild the model of a checkpoint.

    Returns:
        ``(model in eval mode, its ModelSpec)``.
    """
    from maskops.models import create_model

    state = load_checkpoint(path)
    spec = ModelSpec.from_dict(dict(state["spec"]))
    kwargs = dict(state.get("model_kwargs") or {"input_size": spec.input_size[0]})
    model = create_model(spec.architecture, num_classes=spec.num_classes, pretrained=False, **kwargs)
    model.load_state_dict(state["model_state"])
    model.eval()
    return model, spec
