"""The prediction store's benches.

``stats``: ``business_stats`` (the library call behind ``/v1/stats`` and ``maskops stats``) over a
store holding ``--faces`` faces (default 1,000,000: 400,000 requests of 2.5 faces on average over
30 days and 8 sites), on SQLite and on PostgreSQL (a throwaway cluster, or ``--pg-url``). The store
is filled through the writer's own insert path (``write_records``, batches of 2,000), so the fill
rate is also the writer's batch throughput. Each query runs ``--repeat`` times; the median and the
worst are printed. Target: <= 200 ms.

    .venv/bin/python bench/monitor_store.py stats [--faces 1000000] [--db sqlite,postgresql] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "monitor"))

from maskops.monitor.db import open_store  # noqa: E402
from maskops.monitor.prune import store_counts  # noqa: E402
from maskops.monitor.records import FaceRecord, PredictionRecord  # noqa: E402
from maskops.monitor.stats import business_stats  # noqa: E402
from maskops.monitor.store import write_records  # noqa: E402

LABELS = ("with_mask", "without_mask", "mask_weared_incorrect", "uncertain")
LABEL_P = (0.6, 0.25, 0.05, 0.1)
SITES = tuple(f"site-{i}" for i in range(8))
START = datetime(2026, 11, 1)
DAYS = 30


def records(n_faces: int, seed: int = 0):  # type: ignore[no-untyped-def]
    """Requests of 1-4 faces (2.5 on average) spread over DAYS days, until n_faces faces."""
    rng = np.random.default_rng(seed)
    made = 0
    i = 0
    while made < n_faces:
        k = min(int(rng.integers(1, 5)), n_faces - made)
        labels = rng.choice(len(LABELS), size=k, p=LABEL_P)
        faces = tuple(
            FaceRecord(
                box=(10.0, 10.0, 60.0, 70.0),
                face_score=0.9,
                probabilities={"with_mask": 0.7, "without_mask": 0.2, "mask_weared_incorrect": 0.1},
                label=LABELS[j],
                uncertain_reason="low_confidence" if LABELS[j] == "uncertain" else None,
            )
            for j in labels
        )
        yield PredictionRecord(
            request_id=f"bench-{i:08d}",
            created_at=START + timedelta(seconds=float(rng.uniform(0, DAYS * 86400))),
            source="api",
            latency_ms=float(rng.lognormal(3.0, 0.4)),
            width=1280,
            height=720,
            site=SITES[int(rng.integers(len(SITES)))],
            model_name="facemask",
            model_version="bench",
            stages_ms={"decode": 2.0, "detect": 8.0, "classify": 3.0},
            quality={"brightness": 0.5, "contrast": 0.2, "sharpness": 120.0, "saturation": 0.3},
            faces=faces,
        )
        made += k
        i += 1


def fill(engine, n_faces: int, batch: int = 2000) -> tuple[int, float]:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    pending: list[PredictionRecord] = []
    n = 0
    for rec in records(n_faces):
        pending.append(rec)
        if len(pending) == batch:
            n += write_records(engine, pending)
            pending = []
    n += write_records(engine, pending)
    return n, time.perf_counter() - t0


def time_queries(engine, repeat: int) -> dict[str, dict[str, float]]:  # type: ignore[no-untyped-def]
    end = START + timedelta(days=DAYS)
    queries = {
        "30 days by day, all sites": dict(start=START, end=end, bucket="day"),
        "30 days by hour, all sites": dict(start=START, end=end, bucket="hour"),
        "7 days by hour, one site": dict(
            start=end - timedelta(days=7), end=end, bucket="hour", site="site-3"
        ),
        "30 days by day, one site": dict(start=START, end=end, bucket="day", site="site-3"),
    }
    out = {}
    for name, kw in queries.items():
        business_stats(engine, **kw)  # warm the cache and the pool
        times = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            report = business_stats(engine, **kw)
            times.append((time.perf_counter() - t0) * 1000)
        out[name] = {
            "median_ms": round(statistics.median(times), 1),
            "max_ms": round(max(times), 1),
            "rows": len(report.rows),
            "faces": report.total.faces_total if report.total else 0,
        }
    return out


def bench_stats(args: argparse.Namespace) -> dict:
    results: dict = {}
    for db in args.db.split(","):
        cluster = None
        with tempfile.TemporaryDirectory(prefix="maskops-bench-") as tmp:
            if db == "sqlite":
                url = f"sqlite:///{Path(tmp) / 'maskops.db'}"
            elif args.pg_url:
                url = args.pg_url
            else:
                from pgcluster import PgCluster, pg_bin_dir

                bin_dir = pg_bin_dir()
                if bin_dir is None:
                    sys.exit("PostgreSQL binaries not found: apt-get install postgresql, or give --pg-url")
                cluster = PgCluster(bin_dir)
                cluster.start()
                url = cluster.create_database("maskops_bench")
            try:
                engine = open_store(url)
                n_requests, fill_s = fill(engine, args.faces)
                counts = store_counts(engine)
                queries = time_queries(engine, args.repeat)
                engine.dispose()
            finally:
                if cluster is not None:
                    cluster.remove()
        results[db] = {
            "store": counts,
            "fill_s": round(fill_s, 1),
            "fill_requests_per_s": round(n_requests / fill_s),
            "queries": queries,
        }
        print(f"{db}: {counts} filled in {fill_s:.0f} s ({n_requests / fill_s:.0f} requests/s)")
        for name, q in queries.items():
            print(
                f"  {name:<28} median {q['median_ms']:7.1f} ms  max {q['max_ms']:7.1f} ms  ({q['rows']} rows)"
            )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="bench", required=True)
    stats = sub.add_parser("stats", help="business stats over a large store")
    stats.add_argument("--faces", type=int, default=1_000_000)
    stats.add_argument("--db", default="sqlite,postgresql", help="comma-separated: sqlite, postgresql")
    stats.add_argument(
        "--pg-url", default=None, help="an existing PostgreSQL database instead of a throwaway one"
    )
    stats.add_argument("--repeat", type=int, default=20)
    stats.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    results = {
        "bench": args.bench,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}, python {platform.python_version()}",
        "results": bench_stats(args),
    }
    if args.json:
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
