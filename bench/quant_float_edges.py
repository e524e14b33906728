"""One-off: int8 variants of an 80 px facemask run (float first conv / classifier or not).

Agreement with fp32 on val/test crops and single-thread end-to-end latency, interleaved rounds.
Needs a training run folder (default ``work/runs/facemask/s80b``) and the prepared manifest.
Figures quoted in BENCHMARKS.md ("Classifier latency").

    .venv/bin/python bench/quant_float_edges.py [RUN_DIR]
"""

# ruff: noqa
import sys, time, numpy as np, cv2
from pathlib import Path

sys.path.insert(0, "bench")
from maskops.data.manifest import read_manifest
from maskops.inference.classifier import OnnxClassifier
from maskops.export.quantize import quantize_int8, calibration_sample
from maskops.types import ModelSpec
import maskops.export.quantize as Q

src = Path(sys.argv[1] if len(sys.argv) > 1 else "work/runs/facemask/s80b") / "model.onnx"
spec = ModelSpec.load(ModelSpec.card_path(src))
rows = list(read_manifest("work/prepared/facemask/manifest.csv"))


def load(split):
    rs = [r for r in rows if r.split == split]
    return [cv2.imread(r.path) for r in rs], np.array([spec.class_names.index(r.label) for r in rs])


vi, vy = load("val")
ti, ty = load("test")
cal = calibration_sample(vi, 256)
orig = Q.float_edge_nodes
variants = {
    "none": lambda p: [],
    "stem+fc": orig,
    "fc": lambda p: [n for n in orig(p) if "Conv" not in n],
    "stem": lambda p: [n for n in orig(p) if "Conv" in n],
}
f32 = OnnxClassifier(src, num_threads=1)
pv, pt = f32.predict_proba(vi), f32.predict_proba(ti)
clfs = {}
for name, fn in variants.items():
    Q.float_edge_nodes = fn
    out = quantize_int8(src, Path(f"work/bench/q80_{name}.onnx"), cal, spec)
    c = OnnxClassifier(out, num_threads=1)
    clfs[name] = c
    qv, qt = c.predict_proba(vi), c.predict_proba(ti)
    print(
        name,
        "val acc %.4f agree %.4f | test acc %.4f agree %.4f"
        % (
            (qv.argmax(1) == vy).mean(),
            (qv.argmax(1) == pv.argmax(1)).mean(),
            (qt.argmax(1) == ty).mean(),
            (qt.argmax(1) == pt.argmax(1)).mean(),
        ),
        flush=True,
    )
crop = next(c for c in ti if min(c.shape[:2]) >= 24)
times = {k: [] for k in clfs}
for r in range(10):
    for k, c in clfs.items():
        for _ in range(20):
            c.predict_proba([crop])
        t = []
        for _ in range(150):
            t0 = time.perf_counter()
            c.predict_proba([crop])
            t.append(time.perf_counter() - t0)
        times[k].append(np.median(t) * 1000)
for k, v in times.items():
    print(k, "e2e median ms %.3f" % np.median(v))
