"""Shared pieces of the export tests: a tiny torch classifier, its card, generated crops."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from maskops.export.onnx import export_onnx
from maskops.types import ModelSpec


class TinyNet(nn.Module):
    """conv -> ReLU -> global average pool -> linear: enough to exercise every export path."""

    def __init__(self, num_classes: int = 3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(torch.relu(self.bn(self.conv(x)))).flatten(1))


@pytest.fixture(scope="session")
def tiny_net() -> type[TinyNet]:
    return TinyNet


@pytest.fixture(scope="module")
def tiny_model() -> nn.Module:
    torch.manual_seed(0)
    return TinyNet().eval()


@pytest.fixture(scope="module")
def spec() -> ModelSpec:
    return ModelSpec(
        task="facemask",
        class_names=["with_mask", "without_mask", "mask_weared_incorrect"],
        input_size=(24, 20),
        temperature=1.5,
        metrics={"macro_f1": 0.9},
    )


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [
        rng.integers(0, 256, size=(int(rng.integers(10, 60)), int(rng.integers(10, 60)), 3), dtype=np.uint8)
        for _ in range(12)
    ]


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, tiny_model: nn.Module, spec: ModelSpec):
    out = tmp_path_factory.mktemp("export") / "sub" / "tiny.onnx"
    return export_onnx(tiny_model, spec, out)
