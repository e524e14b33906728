"""Cost of the compact face embedding on the served classifier path, side by side in one process.

For a classifier exported with the ``features`` output and a card projection, and the same model
exported without it (the shipped file before the embedding), one intra-op thread as the face
pipeline runs it, on real face crops (1 crop and 4 crops per call), interleaved in rounds:

- ``no-output predict_proba``: the file without the ``features`` output;
- ``with-output predict_proba``: the file with it, logits fetched only;
- ``with-output predict_with_embedding``: logits + features fetched, softmax, PCA projection to
  float16 (what the served pipeline calls).

Each call is timed on the wall clock and on the calling thread's CPU clock (``time.thread_time``:
with one intra-op thread ONNX Runtime computes in the caller), whose median is much less sensitive
to the other processes of a loaded machine; both medians are reported.

    .venv/bin/python bench/embedding_latency.py --with-features work/x/model_int8.onnx \\
        --without-features models/facemask.onnx [--runs 3000] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from latency_sizes import face_crops  # noqa: E402


def interleaved_medians(
    fns: dict[str, Callable[[], object]], runs: int, warmup: int, rounds: int = 20
) -> dict[str, dict[str, float]]:
    """Median wall and thread-CPU ms of each function, runs interleaved in ``rounds``."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    wall: dict[str, list[float]] = {k: [] for k in fns}
    cpu: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for key, fn in fns.items():
            for _ in range(max(1, runs // rounds)):
                t0, c0 = time.perf_counter(), time.thread_time()
                fn()
                cpu[key].append(time.thread_time() - c0)
                wall[key].append(time.perf_counter() - t0)
    return {
        k: {"wall_ms": statistics.median(wall[k]) * 1e3, "cpu_ms": statistics.median(cpu[k]) * 1e3}
        for k in fns
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--with-features", type=Path, required=True, help="model with the features output")
    parser.add_argument("--without-features", type=Path, required=True, help="the same model without it")
    parser.add_argument("--runs", type=int, default=3000)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    from maskops.inference.classifier import OnnxClassifier

    new = OnnxClassifier(args.with_features, num_threads=1)
    old = OnnxClassifier(args.without_features, num_threads=1)
    if new.embedding_dims is None:
        raise SystemExit(f"{args.with_features} gives no embedding (features output + card projection)")
    if old.has_features:
        raise SystemExit(f"{args.without_features} has the features output; pass a file without it")
    crops = [np.ascontiguousarray(c) for c in face_crops(64) if min(c.shape[:2]) >= 16]
    results: dict[str, dict[str, dict[str, float]]] = {}
    for n in (1, 4):
        batch = crops[:n]
        fns: dict[str, Callable[[], object]] = {
            "no-output predict_proba": lambda b=batch: old.predict_proba(b),
            "with-output predict_proba": lambda b=batch: new.predict_proba(b),
            "with-output predict_with_embedding": lambda b=batch: new.predict_with_embedding(b),
        }
        results[f"{n} crop(s)"] = interleaved_medians(fns, args.runs, args.warmup)
    for label, medians in results.items():
        base = medians["no-output predict_proba"]
        print(f"{label}:  median wall ms, median thread-CPU ms (change against no-output)")
        for name, m in medians.items():
            wall, cpu = m["wall_ms"], m["cpu_ms"]
            print(
                f"  {name:<38} wall {wall:7.3f} ({(wall / base['wall_ms'] - 1) * 100:+5.1f}%)"
                f"   cpu {cpu:7.3f} ({(cpu / base['cpu_ms'] - 1) * 100:+5.1f}%)"
            )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "date": datetime.now(UTC).isoformat(timespec="seconds"),
                    "machine": platform.processor() or platform.machine(),
                    "runs": args.runs,
                    "with_features": str(args.with_features),
                    "without_features": str(args.without_features),
                    "median": results,
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
