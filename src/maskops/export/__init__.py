"""ONNX export, parity check against torch, int8 quantization and the model card beside the file.

The submodules import torch / onnx lazily; import them explicitly (``maskops.export.onnx``,
``maskops.export.quantize``).
"""
