"""Single-thread latency of EfficientNet-Lite0 (3 classes) in ONNX Runtime at several input sizes.

For each input size the network (ImageNet weights, new 3-class head) is exported to ONNX with
``maskops.export.onnx.export_onnx`` and quantized to int8 with ``maskops.export.quantize.quantize_int8``
(static QDQ, per-channel, calibrated on real face crops from facemask-voc when the dataset is present).
Each model is timed with one intra-op thread, batch 1, after a warm-up:

- ``model``: ``session.run`` on one preprocessed 1x3xSxS tensor;
- ``e2e``: ``OnnxClassifier.predict_proba([crop])`` on one 64x64 BGR crop (resize + normalise + run).

A MobileNetV2 at 224x224 (the approach of the well-known public face-mask projects, random weights,
``bench/reference_models.py``) is timed the same way for the ratio.

Exported models are kept in ``--work-dir``; an interrupted run resumes without re-exporting.

    .venv/bin/python bench/latency_sizes.py [--sizes 96 112 128 160 224] [--runs 200] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
CLASSES = ["with_mask", "without_mask", "mask_weared_incorrect"]


def face_crops(n: int, seed: int = 0) -> list[np.ndarray]:
    """Up to ``n`` real face crops from facemask-voc (random images if the dataset is absent)."""
    import cv2

    from maskops.config import Settings

    voc = Settings().data_dir / "facemask-voc"
    rng = np.random.default_rng(seed)
    crops: list[np.ndarray] = []
    xmls = sorted((voc / "annotations").glob("*.xml")) if voc.is_dir() else []
    for xml in [xmls[i] for i in rng.permutation(len(xmls))]:
        files = [voc / "images" / (xml.stem + ext) for ext in (".png", ".jpg", ".jpeg")]
        image = next((cv2.imread(str(f)) for f in files if f.is_file()), None)
        if image is None:
            continue
        for obj in ET.parse(xml).getroot().iter("object"):
            box = obj.find("bndbox")
            if box is None:
                continue
            x1, y1, x2, y2 = (int(float(box.findtext(k, "0"))) for k in ("xmin", "ymin", "xmax", "ymax"))
            if x2 - x1 >= 8 and y2 - y1 >= 8:
                crops.append(image[y1:y2, x1:x2].copy())
        if len(crops) >= n:
            return crops[:n]
    while len(crops) < n:
        crops.append(rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8))
    return crops


def export_efficientnet(size: int, out_dir: Path, calibration: list[np.ndarray]) -> tuple[Path, Path]:
    """fp32 and int8 ONNX files of EfficientNet-Lite0 at ``size`` (reused when already present)."""
    fp32, int8 = (
        out_dir / f"effnet_lite0_{size}_same{size}.onnx",
        out_dir / f"effnet_lite0_{size}_same{size}_int8.onnx",
    )
    if fp32.is_file() and int8.is_file():
        return fp32, int8
    import torch

    from maskops.export.onnx import export_onnx
    from maskops.export.quantize import quantize_int8
    from maskops.models import create_model
    from maskops.types import ModelSpec

    torch.manual_seed(0)
    # built as training builds it: the static "same" padding computed for this input size (before
    # 2026-11-30 this script padded for 224 at every size, which at 80 px makes the last stages
    # 2x2 instead of 3x3 and timed a smaller network than the trained one)
    model = create_model("efficientnet_lite0", num_classes=3, pretrained=True, input_size=size).eval()
    spec = ModelSpec(task="facemask", class_names=CLASSES, input_size=(size, size))
    export_onnx(model, spec, fp32)
    quantize_int8(fp32, int8, calibration, spec)
    return fp32, int8


def export_mobilenetv2(out_dir: Path) -> Path:
    path = out_dir / "mobilenetv2_224.onnx"
    if not path.is_file():
        sys.path.insert(0, str(ROOT / "bench"))
        from reference_models import export_mobilenetv2 as export_ref

        export_ref(path, size=224, num_classes=2)
    return path


def make_session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def interleaved_medians(
    fns: dict[str, Callable[[], object]], runs: int, warmup: int, rounds: int = 10
) -> dict[str, float]:
    """Median ms of each function; runs are interleaved in ``rounds`` so load changes on a shared
    machine hit every configuration alike instead of biasing whichever ran at a busy moment."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {k: [] for k in fns}
    per_round = max(1, runs // rounds)
    for _ in range(rounds):
        for key, fn in fns.items():
            for _ in range(per_round):
                t0 = time.perf_counter()
                fn()
                samples[key].append(time.perf_counter() - t0)
    return {k: statistics.median(v) * 1000.0 for k, v in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[96, 112, 128, 160, 224])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=30)
    parser.add_argument("--calibration-n", type=int, default=64)
    parser.add_argument("--work-dir", type=Path, default=ROOT / "work" / "bench" / "latency_sizes")
    parser.add_argument("--no-reference", action="store_true", help="Skip the MobileNetV2 224 reference.")
    parser.add_argument("--json", type=Path, default=None, help="Also write the figures to this file.")
    args = parser.parse_args()

    args.work_dir.mkdir(parents=True, exist_ok=True)
    console = Console()
    calibration = face_crops(args.calibration_n)
    crop = calibration[0] if calibration[0].shape[0] >= 32 else np.full((64, 64, 3), 128, np.uint8)
    crop = np.ascontiguousarray(crop)
    from maskops.inference.classifier import OnnxClassifier

    fns: dict[str, Callable[[], object]] = {}
    files: dict[int, tuple[Path, Path]] = {}
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("export", total=len(args.sizes))
        for size in args.sizes:
            progress.update(task, description=f"export efficientnet_lite0 {size}px")
            files[size] = export_efficientnet(size, args.work_dir, calibration)
            progress.advance(task)
    for size, (fp32, int8) in files.items():
        x = np.random.default_rng(0).standard_normal((1, 3, size, size)).astype(np.float32)
        for kind, path in (("fp32", fp32), ("int8", int8)):
            session = make_session(path)
            fns[f"{size}/{kind}_model"] = partial(session.run, None, {session.get_inputs()[0].name: x})
            clf = OnnxClassifier(path, num_threads=1)
            fns[f"{size}/{kind}_e2e"] = partial(clf.predict_proba, [crop])
    if not args.no_reference:
        ref = make_session(export_mobilenetv2(args.work_dir))
        x224 = np.random.default_rng(0).standard_normal((1, 3, 224, 224)).astype(np.float32)
        fns["mobilenetv2"] = partial(ref.run, None, {ref.get_inputs()[0].name: x224})
    with console.status(f"timing {len(fns)} configurations x {args.runs} runs, interleaved"):
        medians = interleaved_medians(fns, args.runs, args.warmup)
    reference = medians.get("mobilenetv2")
    rows: list[dict[str, Any]] = [
        {
            "model": "efficientnet_lite0",
            "size": size,
            **{k: medians[f"{size}/{k}"] for k in ("fp32_model", "int8_model", "fp32_e2e", "int8_e2e")},
            "fp32_mb": fp32.stat().st_size / 1e6,
            "int8_mb": int8.stat().st_size / 1e6,
        }
        for size, (fp32, int8) in files.items()
    ]

    table = Table(
        title=f"median ms, batch 1, 1 intra-op thread, {args.runs} runs (onnxruntime {ort.__version__})"
    )
    for col in ("input", "fp32 model", "int8 model", "fp32 e2e", "int8 e2e", "fp32 MB", "int8 MB"):
        table.add_column(col, justify="right")
    if reference:
        table.add_column("fp32 / MobileNetV2-224", justify="right")
    for r in rows:
        cells = [
            f"{r['size']}",
            f"{r['fp32_model']:.2f}",
            f"{r['int8_model']:.2f}",
            f"{r['fp32_e2e']:.2f}",
            f"{r['int8_e2e']:.2f}",
            f"{r['fp32_mb']:.1f}",
            f"{r['int8_mb']:.1f}",
        ]
        if reference:
            cells.append(f"{r['fp32_model'] / reference:.2f}")
        table.add_row(*cells)
    console.print(table)
    if reference:
        console.print(f"MobileNetV2 224x224 fp32 (random weights): {reference:.2f} ms median")
    console.print(
        f"machine: {platform.processor() or platform.machine()}, python {platform.python_version()}"
    )
    if args.json:
        args.json.write_text(
            json.dumps({"runs": args.runs, "rows": rows, "mobilenetv2_224_ms": reference}, indent=2) + "\n"
        )


if __name__ == "__main__":
    main()
