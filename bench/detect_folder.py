"""Folder throughput of ``maskops detect`` on the 853 facemask-voc images, both cores busy (issue 4).

Runs the real command (``maskops detect <images> --out <tmp>``, default workers = one per core) in
a subprocess ``--rounds`` times and reports, per round, the images/s the command measured over its
own processing (``summary.json``), the wall time of the whole process (start-up, model loading and
writing the annotated images included), the CPU use of the process and the per-stage medians.

    .venv/bin/python bench/detect_folder.py [--rounds 3] [--images DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def one_round(images: Path, extra: list[str]) -> dict[str, float | dict[str, float]]:
    with tempfile.TemporaryDirectory(prefix="maskops-detect-bench-") as tmp:
        out = Path(tmp) / "out"
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-m", "maskops.cli", "detect", str(images), "--out", str(out), *extra],
            cwd=ROOT,
            env={**os.environ, "MASKOPS_NO_PROGRESS": "1"},
            capture_output=True,
            text=True,
        )
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if proc.returncode != 0:
            raise SystemExit(f"maskops detect failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
        summary = json.loads((out / "summary.json").read_text())
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "images": float(summary["images"]),
        "faces": float(summary.get("faces", 0)),
        "images_per_s": float(summary["images_per_s"]),
        "wall_s": wall,
        "cores_busy": cpu / wall,
        "stage_ms": summary.get("median_ms", summary.get("stage_ms", {})),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--images", type=Path, default=None, help="default: <data>/facemask-voc/images")
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()
    from maskops.config import Settings

    images = args.images or Settings().data_dir / "facemask-voc" / "images"
    if not images.is_dir():
        raise SystemExit(f"{images} not found (set MASKOPS_DATA_DIR)")
    extra = [] if args.workers is None else ["--workers", str(args.workers)]
    rounds = [one_round(images, extra) for _ in range(args.rounds)]
    ips = [float(r["images_per_s"]) for r in rounds]  # type: ignore[arg-type]
    wall = [float(r["wall_s"]) for r in rounds]  # type: ignore[arg-type]
    busy = [float(r["cores_busy"]) for r in rounds]  # type: ignore[arg-type]
    print(
        f"{platform.machine()}, {os.cpu_count()} cores, {datetime.now(UTC):%Y-%m-%d}; "
        f"{int(rounds[0]['images'])} images, {int(rounds[0]['faces'])} faces"  # type: ignore[arg-type]
    )
    print("| figure | median | rounds |")
    print("| --- | --- | --- |")
    print(f"| images/s (processing) | {statistics.median(ips):.1f} | {', '.join(f'{v:.1f}' for v in ips)} |")
    n = float(rounds[0]["images"])  # type: ignore[arg-type]
    print(
        f"| images/s (whole process, start-up included) | {n / statistics.median(wall):.1f} | "
        f"{', '.join(f'{n / w:.1f}' for w in wall)} |"
    )
    print(
        f"| cores busy (CPU s / wall s) | {statistics.median(busy):.2f} | {', '.join(f'{b:.2f}' for b in busy)} |"
    )
    print(f"\nper-stage medians of the last round (ms/image): {rounds[-1]['stage_ms']}")


if __name__ == "__main__":
    main()
