"""Reference networks of the public face-mask projects, for side-by-side speed comparisons.

The well-known public projects classify 224x224 face crops with a MobileNetV2 (Keras or torchvision).
torchvision is not installed here, so MobileNetV2 is written out (Sandler et al. 2018, width 1.0);
random weights are enough for timing.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


def _conv_bn(cin: int, cout: int, k: int, stride: int, groups: int = 1, act: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
    ]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class _InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = []
        if expand != 1:
            layers.append(_conv_bn(cin, hidden, 1, 1))
        layers += [
            _conv_bn(hidden, hidden, 3, stride, groups=hidden),
            _conv_bn(hidden, cout, 1, 1, act=False),
        ]
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x) if self.residual else self.block(x)


class MobileNetV2(nn.Module):
    """MobileNetV2 1.0 with a ``num_classes`` head (2 in the public mask projects)."""

    # expansion t, channels c, repeats n, stride s
    SETTINGS = (
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    )

    def __init__(self, num_classes: int = 2) -> None:
        super().__init__()
        layers: list[nn.Module] = [_conv_bn(3, 32, 3, 2)]
        cin = 32
        for t, c, n, s in self.SETTINGS:
            for i in range(n):
                layers.append(_InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        layers.append(_conv_bn(cin, 1280, 1, 1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(1280, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).mean((2, 3)))


def export_mobilenetv2(path: Path, size: int = 224, num_classes: int = 2) -> Path:
    """Export a randomly initialised MobileNetV2 to ONNX (dynamic batch) for timing."""
    torch.manual_seed(0)
    model = MobileNetV2(num_classes).eval()
    torch.onnx.export(
        model,
        (torch.zeros(1, 3, size, size),),
        str(path),
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    return path


# ---------------------------------------------------------------- YOLOv8n-sized single-stage detector


class _ConvSiLU(nn.Module):
    """Conv2d + BatchNorm + SiLU, YOLOv8's ``Conv``."""

    def __init__(self, cin: int, cout: int, k: int = 1, s: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, s, k // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.act = nn.SiLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class _Bottleneck(nn.Module):
    def __init__(self, c: int, shortcut: bool) -> None:
        super().__init__()
        self.cv1, self.cv2 = _ConvSiLU(c, c, 3), _ConvSiLU(c, c, 3)
        self.add = shortcut

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class _C2f(nn.Module):
    def __init__(self, cin: int, cout: int, n: int, shortcut: bool) -> None:
        super().__init__()
        self.c = cout // 2
        self.cv1 = _ConvSiLU(cin, 2 * self.c)
        self.cv2 = _ConvSiLU((2 + n) * self.c, cout)
        self.m = nn.ModuleList(_Bottleneck(self.c, shortcut) for _ in range(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ys = list(self.cv1(x).chunk(2, 1))
        for m in self.m:
            ys.append(m(ys[-1]))
        return self.cv2(torch.cat(ys, 1))


class _SPPF(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.cv1, self.cv2 = _ConvSiLU(c, c // 2), _ConvSiLU(c * 2, c)
        self.pool = nn.MaxPool2d(5, 1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.cv1(x)
        y1 = self.pool(x)
        y2 = self.pool(y1)
        return self.cv2(torch.cat([x, y1, y2, self.pool(y2)], 1))


class YoloV8nLike(nn.Module):
    """The YOLOv8n layout (width 0.25, depth 0.33: ~3.0 M parameters, ~8.7 GFLOPs at 640):
    C2f backbone + SPPF, PAN neck, decoupled anchor-free head with DFL box decoding.

    Written out because ultralytics is not a dependency; random weights are enough for timing.
    Output: (batch, 4 + num_classes, anchors) with boxes as distances decoded by DFL.
    """

    def __init__(self, num_classes: int = 3, reg_max: int = 16) -> None:
        super().__init__()
        self.reg_max, self.nc = reg_max, num_classes
        self.stem = nn.Sequential(_ConvSiLU(3, 16, 3, 2), _ConvSiLU(16, 32, 3, 2), _C2f(32, 32, 1, True))
        self.p3 = nn.Sequential(_ConvSiLU(32, 64, 3, 2), _C2f(64, 64, 2, True))
        self.p4 = nn.Sequential(_ConvSiLU(64, 128, 3, 2), _C2f(128, 128, 2, True))
        self.p5 = nn.Sequential(_ConvSiLU(128, 256, 3, 2), _C2f(256, 256, 1, True), _SPPF(256))
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.n4 = _C2f(384, 128, 1, False)
        self.n3 = _C2f(192, 64, 1, False)
        self.d3, self.m4 = _ConvSiLU(64, 64, 3, 2), _C2f(192, 128, 1, False)
        self.d4, self.m5 = _ConvSiLU(128, 128, 3, 2), _C2f(384, 256, 1, False)
        c2, c3 = 64, max(64, num_classes)
        self.box = nn.ModuleList(
            nn.Sequential(_ConvSiLU(c, c2, 3), _ConvSiLU(c2, c2, 3), nn.Conv2d(c2, 4 * reg_max, 1))
            for c in (64, 128, 256)
        )
        self.cls = nn.ModuleList(
            nn.Sequential(_ConvSiLU(c, c3, 3), _ConvSiLU(c3, c3, 3), nn.Conv2d(c3, num_classes, 1))
            for c in (64, 128, 256)
        )
        self.register_buffer("proj", torch.arange(reg_max, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p3 = self.p3(self.stem(x))
        p4 = self.p4(p3)
        p5 = self.p5(p4)
        n4 = self.n4(torch.cat([self.up(p5), p4], 1))
        n3 = self.n3(torch.cat([self.up(n4), p3], 1))
        m4 = self.m4(torch.cat([self.d3(n3), n4], 1))
        m5 = self.m5(torch.cat([self.d4(m4), p5], 1))
        outs = []
        for feat, box, cls in zip((n3, m4, m5), self.box, self.cls, strict=True):
            b = box(feat).flatten(2)  # (B, 4*reg_max, A)
            dist = (b.view(b.shape[0], 4, self.reg_max, -1).softmax(2) * self.proj.view(1, 1, -1, 1)).sum(2)
            outs.append(torch.cat([dist, cls(feat).flatten(2).sigmoid()], 1))
        return torch.cat(outs, 2)


def export_yolov8n_like(path: Path, size: int = 640, num_classes: int = 3) -> Path:
    """Export a randomly initialised YOLOv8n-sized detector to ONNX at ``size`` x ``size``."""
    torch.manual_seed(0)
    model = YoloV8nLike(num_classes).eval()
    torch.onnx.export(
        model,
        (torch.zeros(1, 3, size, size),),
        str(path),
        input_names=["images"],
        output_names=["output0"],
        opset_version=17,
        dynamo=False,
    )
    return path
