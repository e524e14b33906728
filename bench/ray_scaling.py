"""Ray engine of ``maskops detect``: images/s at 1 and 2 actors, the local engine beside it, same output.

On ``--images`` photos (facemask-voc, then facemask-ilc2021, the list repeated when short), with the
shipped classifier (models/facemask.onnx) and ``--detector`` (default yunet_cal):

- ``local``: the thread-pool engine (``BatchDetector``) with 2 workers, one ONNX thread each, as
  ``maskops detect --workers 2`` runs on 2 cores;
- ``ray_1`` / ``ray_2``: the Ray engine (``RayDetector``) with a pool of 1 and 2 actors.

Throughput is processed images over the wall time of ``run`` (Ray: actor start-up included), and
``steady_images_per_s`` counts from the first record on (actor start-up and model loading excluded).
Every engine's records are compared with the local engine's, ``timings_ms`` left out (measured
times differ run to run). The load average before and after each part is recorded: on a shared
machine the figures are depressed and noisy.

    .venv/bin/python bench/ray_scaling.py [--images 1000] [--address 127.0.0.1:6379] \\
        [--batch-size 4] [--worker-nice 15] [--json work/bench/ray_scaling.json]

Without ``--address`` each Ray part starts a private instance on 127.0.0.1 (2 CPUs).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from maskops.detect.batch import BatchDetector, ImageJob, collect_images  # noqa: E402
from maskops.detect.pipeline import detector_factory  # noqa: E402
from maskops.scale.ray_engine import PipelineSpec, RayDetector  # noqa: E402

DATA = Path(os.environ.get("MASKOPS_DATA_DIR", ROOT.parent / "shared" / "datasets"))


def image_list(n: int) -> list[ImageJob]:
    files: list[Path] = []
    for name in ("facemask-voc", "facemask-ilc2021"):
        folder = DATA / name / "images"
        if folder.is_dir():
            files.extend(sorted(p for p in folder.iterdir() if p.is_file()))
    if not files:
        raise SystemExit(f"no images under {DATA} (set MASKOPS_DATA_DIR)")
    chosen = (files * (n // len(files) + 1))[:n]
    jobs, missing = collect_images(chosen)
    assert not missing
    return jobs


def timed(records: Any, names: list[str]) -> tuple[list[dict[str, Any]], float, float]:
    t0 = time.perf_counter()
    first = None
    out = []
    for rec in records:
        if first is None:
            first = time.perf_counter()
        out.append(rec.to_json(names))
    end = time.perf_counter()
    return out, end - t0, end - (first if first is not None else t0)


def strip(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "timings_ms"} for r in lines]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--model", type=Path, default=ROOT / "models" / "facemask.onnx")
    parser.add_argument("--detector", default="yunet_cal")
    parser.add_argument("--address", default=None, help="a running Ray cluster (default: a private one)")
    parser.add_argument("--batch-size", type=int, default=4, help="images per actor call")
    parser.add_argument("--worker-nice", type=int, default=0, help="niceness of the Ray actors")
    parser.add_argument("--json", type=Path, default=ROOT / "work" / "bench" / "ray_scaling.json")
    args = parser.parse_args()

    jobs = image_list(args.images)
    spec = PipelineSpec(model=args.model.resolve(), detector=args.detector)
    pipeline = spec.build()
    names = pipeline.class_names
    parts: dict[str, Any] = {}

    load0 = os.getloadavg()
    local = BatchDetector(pipeline, detector_factory(args.detector, num_threads=1), workers=2)
    expected, wall, steady = timed(local.run(jobs), names)
    parts["local"] = {"workers": 2, "seconds": round(wall, 2), "images_per_s": round(len(jobs) / wall, 3)}
    parts["local"]["load_before_after"] = [load0[0], os.getloadavg()[0]]
    print(json.dumps({"local": parts["local"]}), flush=True)

    for workers in (1, 2):
        load0 = os.getloadavg()
        engine = RayDetector(
            spec,
            workers=workers,
            address=args.address,
            batch_size=args.batch_size,
            worker_nice=args.worker_nice,
        )
        with engine as eng:
            got, wall, steady = timed(eng.run(jobs), names)
        parts[f"ray_{workers}"] = {
            "workers": workers,
            "seconds": round(wall, 2),
            "images_per_s": round(len(jobs) / wall, 3),
            "steady_images_per_s": round((len(jobs) - 1) / steady, 3) if steady > 0 else None,
            "identical_to_local": strip(got) == strip(expected),
            "load_before_after": [load0[0], os.getloadavg()[0]],
        }
        print(json.dumps({f"ray_{workers}": parts[f"ray_{workers}"]}), flush=True)

    r1, r2 = parts["ray_1"], parts["ray_2"]
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python", *sys.argv]),
        "host": {"cpus": os.cpu_count(), "python": platform.python_version(), "loadavg": os.getloadavg()},
        "images": len(jobs),
        "detector": args.detector,
        "batch_size": args.batch_size,
        "parts": parts,
        "speedup_2_vs_1": round(r2["images_per_s"] / r1["images_per_s"], 3),
        "steady_speedup_2_vs_1": (
            round(r2["steady_images_per_s"] / r1["steady_images_per_s"], 3)
            if r1["steady_images_per_s"] and r2["steady_images_per_s"]
            else None
        ),
        "target": ">= 1.7x the 1-actor throughput, output identical to the local engine",
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
