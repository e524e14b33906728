"""A small from-scratch CNN: a fast baseline and the model the tests train."""

from __future__ import annotations

from typing import Any

from maskops.models._registry import register_model


@register_model
def tiny_cnn(num_classes: int, pretrained: bool = False, width: int = 16, **_: Any) -> Any:
    """Four conv-BN-ReLU stages (stride 2 from the second) and global average pooling.

    Args:
        num_classes: classes of the head.
        pretrained: ignored (there are no pretrained weights).
        width: channels of the first stage; doubles at each of the next two.
    """
    from torch import nn

    def stage(cin: int, cout: int, stride: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )

    w = int(width)
    return nn.Sequential(
        stage(3, w, 1),
        stage(w, 2 * w, 2),
        stage(2 * w, 4 * w, 2),
        stage(4 * w, 4 * w, 2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4 * w, num_classes),
    )
