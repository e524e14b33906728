"""A tiny raw data set (one image folder per class) and a task over it, for the pipeline tests."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import yaml

CLASSES = ["red", "green", "blue"]


def toy_image(label: int, rng: np.random.Generator, size: int = 32) -> np.ndarray:
    """Noise plus a disc whose colour channel is the class."""
    img = rng.integers(0, 90, size=(size, size, 3), dtype=np.uint8)
    colour = [40, 40, 40]
    colour[2 - label] = 230
    centre = (int(rng.integers(10, size - 10)), int(rng.integers(10, size - 10)))
    cv2.circle(img, centre, int(rng.integers(6, 9)), colour, -1)
    return img


def write_dataset(root: Path, per_class: int = 14, seed: int = 3) -> Path:
    """``root/<class>/<class>_<i>.png``: a folder source."""
    rng = np.random.default_rng(seed)
    for k, name in enumerate(CLASSES):
        folder = root / name
        folder.mkdir(parents=True)
        for i in range(per_class):
            cv2.imwrite(str(folder / f"{name}_{i}.png"), toy_image(k, rng))
    return root


def write_task(path: Path, source: str = "toy-folder") -> Path:
    """A classification task over the folder source ``source`` (under the data dir): tiny model, 1 epoch."""
    path.write_text(
        yaml.safe_dump(
            {
                "name": "toy",
                "kind": "classification",
                "classes": CLASSES,
                "sources": [{"name": source, "kind": "folder", "path": source}],
                "train": {
                    "model": "tiny_cnn",
                    "input_size": 16,
                    "epochs": 1,
                    "batch_size": 8,
                    "lr": 0.003,
                    "num_threads": 1,
                    "augment": {"jpeg": 0.0},
                },
            }
        )
    )
    return path
