"""`dvc repro` with nothing changed: how long the pipeline takes to see that every stage is up to date.

The project's `dvc.yaml` runs on a tiny generated task in a temporary git repository (the repository
the pipeline test builds, `tests/pipelines/test_dvc.py`): one full `dvc repro`, a commit, then
`--runs` timed `dvc repro` and `dvc status` calls, each of which must run no stage. A no-op repro of
the real facemask task needs its `dvc.lock`, which only a full training writes; the stages' checks
(hashing the dependencies, reading the lock) are the same, on fewer and smaller files.

    .venv/bin/python bench/dvc_noop.py [--runs 5] [--json work/bench/dvc_noop.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "pipelines"))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    import test_dvc  # the pipeline test's repository builder

    with tempfile.TemporaryDirectory(prefix="maskops-dvc-") as tmp:
        repo, env = test_dvc._repo(Path(tmp))
        dvc = str(test_dvc.VENV_BIN / "dvc")
        started = time.perf_counter()
        test_dvc._run([dvc, "repro"], repo, env)
        first_s = time.perf_counter() - started
        test_dvc._commit(repo, env, "first run")
        timings: dict[str, list[float]] = {"repro": [], "status": []}
        for _ in range(args.runs):
            for cmd in ("repro", "status"):
                t0 = time.perf_counter()
                out = test_dvc._run([dvc, cmd], repo, env)
                timings[cmd].append(time.perf_counter() - t0)
                if test_dvc._ran(out):
                    sys.exit(f"dvc {cmd} ran stages with nothing changed:\n{out}")
    result = {
        "first_repro_s": round(first_s, 1),
        "runs": args.runs,
        **{f"noop_{k}_median_s": round(statistics.median(v), 2) for k, v in timings.items()},
        **{f"noop_{k}_s": [round(x, 2) for x in v] for k, v in timings.items()},
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    print(
        f"first repro {result['first_repro_s']} s; nothing changed: repro median "
        f"{result['noop_repro_median_s']} s {result['noop_repro_s']}, status median "
        f"{result['noop_status_median_s']} s (load {result['load_average']})"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
