"""A tiny generated classification data set with a manifest in the data stage's columns."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from maskops.config import TaskConfig, TrainConfig

CLASSES = ["red", "green", "blue"]
COLUMNS = ["path", "sha256", "label", "split", "group", "source", "parent", "box"]


def toy_image(label: int, rng: np.random.Generator, size: int = 24) -> np.ndarray:
    """Noise plus a disc whose colour channel is the class (BGR channel 2 - label)."""
    img = rng.integers(0, 90, size=(size, size, 3), dtype=np.uint8)
    c = (int(rng.integers(8, size - 8)), int(rng.integers(8, size - 8)))
    colour = [40, 40, 40]
    colour[2 - label] = 230
    cv2.circle(img, c, int(rng.integers(5, 8)), colour, -1)
    return img


def write_manifest(
    root: Path,
    counts: dict[str, dict[str, int]],
    *,
    classes: list[str] = CLASSES,
    seed: int = 0,
) -> Path:
    """Write PNGs and ``manifest.csv``; ``counts[split][class] = n``."""
    rng = np.random.default_rng(seed)
    img_dir = root / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for split, per_class in counts.items():
        for name, n in per_class.items():
            for k in range(n):
                path = img_dir / f"{split}_{name}_{k}.png"
                cv2.imwrite(str(path), toy_image(classes.index(name), rng))
                rows.append(
                    {
                        "path": str(path),
                        "sha256": f"{split}{name}{k}",
                        "label": name,
                        "split": split,
                        "group": f"{split}{name}{k}",
                        "source": "toy",
                        "parent": "",
                        "box": "",
                    }
                )
    manifest = root / "manifest.csv"
    with manifest.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return manifest


@pytest.fixture
def toy_task() -> TaskConfig:
    return TaskConfig(name="toy", kind="classification", classes=CLASSES, sources=[])


@pytest.fixture
def toy_cfg() -> TrainConfig:
    return TrainConfig(
        model="tiny_cnn",
        input_size=16,
        epochs=2,
        batch_size=8,
        lr=3e-3,
        patience=5,
        seed=7,
        num_threads=1,
        augment={"jpeg": 0.0},
    )


@pytest.fixture
def toy_manifest(tmp_path: Path) -> Path:
    counts = {
        "train": {"red": 8, "green": 8, "blue": 4},
        "val": {"red": 4, "green": 4, "blue": 3},
        "test": {"red": 4, "green": 3, "blue": 3},
    }
    return write_manifest(tmp_path / "data", counts)


@pytest.fixture
def make_manifest(tmp_path: Path) -> Callable[..., Path]:
    def make(counts: dict[str, dict[str, int]], name: str = "data2") -> Path:
        return write_manifest(tmp_path / name, counts)

    return make


@pytest.fixture(scope="session")
def mlflow_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One SQLite MLflow store for the session (creating the schema takes ~2 s)."""
    return tmp_path_factory.mktemp("mlflow") / "mlflow.db"
