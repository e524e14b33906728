"""One-off: the trained 80 px model against the same network with ImageNet weights, side by side.

``session.run`` medians, one thread, on one real crop, with and without ONNX Runtime's
``session.set_denormal_as_zero``. Run ``bench/quant_float_edges.py`` style quantization first: it
reads ``work/bench/gap_*_True.onnx`` written by ``quantize_int8(..., float_edges=True)`` of
``work/bench/latency_sizes/effnet_lite0_80.onnx`` and ``work/runs/facemask/s80b/model.onnx``
(see ``make_int8`` below). Figures quoted in BENCHMARKS.md ("Classifier latency").

    .venv/bin/python bench/weights_latency.py
"""

# ruff: noqa
from pathlib import Path

import cv2

from maskops.data.manifest import read_manifest
from maskops.export.quantize import calibration_sample, quantize_int8
from maskops.types import ModelSpec


def make_int8() -> None:
    rows = [r for r in read_manifest("work/prepared/facemask/manifest.csv") if r.split == "val"]
    cal = calibration_sample([cv2.imread(r.path) for r in rows], 256)
    srcs = {
        "imagenet": Path("work/bench/latency_sizes/effnet_lite0_80.onnx"),
        "trained": Path("work/runs/facemask/s80b/model.onnx"),
    }
    spec = ModelSpec.load(ModelSpec.card_path(srcs["trained"]))
    for k, p in srcs.items():
        quantize_int8(p, Path(f"work/bench/gap_{k}_True.onnx"), cal, spec, float_edges=True)


make_int8()
import time, numpy as np, onnxruntime as ort

paths = {
    "imagenet_int8": "work/bench/gap_imagenet_True.onnx",
    "trained_int8": "work/bench/gap_trained_True.onnx",
    "imagenet_fp32": "work/bench/latency_sizes/effnet_lite0_80.onnx",
    "trained_fp32": "work/runs/facemask/s80b/model.onnx",
}
ss = {}
for k, p in paths.items():
    for daz in (0, 1):
        o = ort.SessionOptions()
        o.intra_op_num_threads = 1
        o.inter_op_num_threads = 1
        if daz:
            o.add_session_config_entry("session.set_denormal_as_zero", "1")
        ss[f"{k} daz={daz}"] = ort.InferenceSession(p, o, providers=["CPUExecutionProvider"])
import cv2
from maskops.inference.preprocess import preprocess
from maskops.types import ModelSpec

spec = ModelSpec.load("models/facemask.json")
img = cv2.imread(
    "work/prepared/facemask/"
    + open("work/prepared/facemask/manifest.csv").read().split("\n")[300].split(",")[0]
)
x = preprocess([img], spec)
t = {k: [] for k in ss}
keys = list(ss)
for r in range(8):
    for k in keys if r % 2 == 0 else keys[::-1]:
        s = ss[k]
        n = s.get_inputs()[0].name
        for _ in range(20):
            s.run(None, {n: x})
        a = []
        for _ in range(120):
            t0 = time.perf_counter()
            s.run(None, {n: x})
            a.append(time.perf_counter() - t0)
        t[k].append(np.median(a) * 1000)
for k, v in t.items():
    print("%-28s %.3f ms" % (k, np.median(v)))
