"""Latency of the shipped classifiers (models/*.onnx), one crop, one thread, against MobileNetV2-224.

Side by side in one process, interleaved in rounds so the load of a shared machine hits every
configuration alike:

- ``<task> e2e``: ``OnnxClassifier.predict_proba([crop])`` on one real face crop (resize, normalise,
  run, calibrated softmax), one intra-op thread;
- ``<task> model``: ``session.run`` on one preprocessed tensor;
- ``mobilenetv2-224 e2e``: the public projects' approach: resize the same crop to 224x224,
  normalise, run a MobileNetV2 (random weights, ``bench/reference_models.py``), one thread;
- ``mobilenetv2-224 model``: its ``session.run`` alone.

    .venv/bin/python bench/classifier_latency.py [--runs 2000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from latency_sizes import export_mobilenetv2, face_crops, interleaved_medians, make_session  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", type=Path, nargs="+", default=sorted((ROOT / "models").glob("*.onnx")))
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--work-dir", type=Path, default=ROOT / "work" / "bench" / "latency_sizes")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    from maskops.inference.classifier import OnnxClassifier
    from maskops.inference.preprocess import preprocess
    from maskops.types import ModelSpec

    if not args.models:
        raise SystemExit("no models given and none found in models/")
    args.work_dir.mkdir(parents=True, exist_ok=True)
    crop = np.ascontiguousarray(next(c for c in face_crops(64) if min(c.shape[:2]) >= 24))
    fns: dict[str, Callable[[], object]] = {}
    info: dict[str, dict[str, object]] = {}
    for path in args.models:
        clf = OnnxClassifier(path, num_threads=1)
        name = clf.spec.task
        if name in info:  # two files of one task side by side (e.g. a candidate and the shipped one)
            name = f"{name} [{path.parent.name}/{path.stem}]"
        fns[f"{name} e2e"] = partial(clf.predict_proba, [crop])
        session = make_session(path)
        x = preprocess([crop], clf.spec)
        fns[f"{name} model"] = partial(session.run, None, {session.get_inputs()[0].name: x})
        info[name] = {
            "file": str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path),
            "size_mb": round(path.stat().st_size / 1e6, 2),
            "input": f"{clf.spec.input_size[0]}x{clf.spec.input_size[1]}",
            "quantized": clf.spec.extra.get("quantized", "fp32"),
        }
    ref = make_session(export_mobilenetv2(args.work_dir))
    ref_spec = ModelSpec(task="reference", class_names=["a", "b"], input_size=(224, 224))
    ref_name = ref.get_inputs()[0].name

    def reference_e2e() -> object:
        return ref.run(None, {ref_name: preprocess([crop], ref_spec)})

    x224 = preprocess([cv2.resize(crop, (224, 224))], ref_spec)
    fns["mobilenetv2-224 e2e"] = reference_e2e
    fns["mobilenetv2-224 model"] = partial(ref.run, None, {ref_name: x224})
    medians = interleaved_medians(fns, args.runs, args.warmup, rounds=20)

    ref_e2e, ref_model = medians["mobilenetv2-224 e2e"], medians["mobilenetv2-224 model"]
    print(
        f"crop {crop.shape[1]}x{crop.shape[0]} px, 1 intra-op thread, batch 1, {args.runs} runs each, interleaved"
    )
    print(f"onnxruntime {ort.__version__}, {platform.machine()}, {datetime.now(UTC).date()}\n")
    print("| model | input | file MB | e2e median ms | model median ms | MobileNetV2-224 e2e / this e2e |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, meta in info.items():
        e2e, model = medians[f"{name} e2e"], medians[f"{name} model"]
        print(
            f"| {name} ({meta['quantized']}) | {meta['input']} | {meta['size_mb']} | {e2e:.2f} | {model:.2f} "
            f"| {ref_e2e / e2e:.1f}x |"
        )
    print(f"| MobileNetV2 (fp32, random weights) | 224x224 | - | {ref_e2e:.2f} | {ref_model:.2f} | 1.0x |")
    if args.json:
        args.json.write_text(json.dumps({"medians_ms": medians, "models": info, "runs": args.runs}, indent=2))


if __name__ == "__main__":
    main()
