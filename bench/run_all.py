"""Run every benchmark script whose results go to BENCHMARKS.md, one after another.

    .venv/bin/python bench/run_all.py [--only NAME ...]

Each script prints a markdown table; this runner only sequences them and stops at the first
failure (a benchmark that cannot run is a finding, not something to skip silently).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent

SCRIPTS = [
    "classifier_quality.py",
    "classifier_latency.py",
    "latency_sizes.py",
    "detection_map.py",
    "video_fps.py",
    "detect_folder.py",
    "serve_load.py",
]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", nargs="+", default=None, help="Script names (without .py) to run.")
    args = parser.parse_args()
    scripts = [s for s in SCRIPTS if args.only is None or s.removesuffix(".py") in args.only]
    scripts += [
        f"{n}.py" for n in (args.only or []) if f"{n}.py" not in SCRIPTS and (BENCH / f"{n}.py").is_file()
    ]
    for script in scripts:
        print(f"\n## {script}\n", flush=True)
        code = subprocess.call([sys.executable, str(BENCH / script)])
        if code != 0:
            raise SystemExit(f"{script} failed with exit code {code}")


if __name__ == "__main__":
    main()
