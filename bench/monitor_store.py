"""The prediction store's benches.

``stats``: ``business_stats`` (the library call behind ``/v1/stats`` and ``maskops stats``) over a
store holding ``--faces`` faces (default 1,000,000: 400,000 requests of 2.5 faces on average over
30 days and 8 sites), on SQLite and on PostgreSQL (a throwaway cluster, or ``--pg-url``). The store
is filled through the writer's own insert path (``write_records``, batches of 2,000), so the fill
rate is also the writer's batch throughput. Each query runs ``--repeat`` times; the median and the
worst are printed. Target: <= 200 ms.

The records are written in time order by default, as a serving process writes them (the rollup rows
of an hour are then created together); ``--order random`` writes them in random time order (every
batch touching every hour of the month: the layout of the figures measured before 2026-12-03 16:00,
slower to read on SQLite, whose rollup rows are then scattered). ``--sqlite-path FILE`` keeps the
SQLite store in FILE, and a store (that file or ``--pg-url``) already holding ``--faces`` faces is
not filled again: queries can be re-timed without the fill.

    .venv/bin/python bench/monitor_store.py stats [--faces 1000000] [--db sqlite,postgresql] [--order time|random]
        [--sqlite-path FILE] [--pg-url URL] [--http] [--json out.json]

``--http`` also times ``GET /v1/stats`` of ``maskops serve`` on the same store (the whole answer,
JSON included: a month by hour over every site is 5,760 rows, ~1.3 MB).

``overhead``: throughput of ``POST /v1/detect`` at concurrency 8 against ``maskops serve`` (a
uvicorn subprocess on loopback, the shipped models, the 640x480 payload of ``bench/serve_load.py``)
with the store off, on SQLite and on PostgreSQL, in interleaved rounds so the load of a shared
machine hits every configuration alike. Target: store on >= 95 % of store off. With
``--side-by-side`` the store-off server and a store-on one run at the same time, each in a CPU
cgroup of its own (equal shares; a PostgreSQL server in the store-on group) under its own load at
concurrency 8: the machine's other load then slows both alike, which interleaved rounds cannot
promise on a shared machine (there, rounds of one configuration differ by up to 30 %).

``outage``: a PostgreSQL store stopped for ``--down`` seconds in the middle of a ``--seconds`` load
run and started again. Every request carries its own ``X-Request-ID``; after the replay the store
must hold every answered request exactly once and no request may fail.

``kill``: ``kill -9`` of the server during load, then a restart on the same work dir (its spool):
the store must hold every answered request but those still in the writer's memory at the kill, and
none twice.

``cost``: the store's CPU per served image, measured in one process without a server (steady on a
shared machine, unlike ``overhead``): on the request path, ``build_record`` with the quality
features of the 640x480 payload; in the writer thread, ``write_records`` per record at batch sizes
1, 5, 25 and 100 on SQLite and PostgreSQL (client-side CPU: ``time.thread_time``).

    .venv/bin/python bench/monitor_store.py overhead [--rounds 3] [--seconds 20] [--side-by-side]
    .venv/bin/python bench/monitor_store.py cost [--records 2000]
    .venv/bin/python bench/monitor_store.py outage [--seconds 90] [--down 30]
    .venv/bin/python bench/monitor_store.py kill [--seconds 20]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
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


def records(n_faces: int, seed: int = 0, order: str = "time"):  # type: ignore[no-untyped-def]
    """Requests of 1-4 faces (2.5 on average) spread over DAYS days, until n_faces faces; in time
    order (``order="time"``, the request ids and contents as in random order) or in random order."""
    if order == "time":
        yield from sorted(records(n_faces, seed, "random"), key=lambda r: r.created_at)
        return
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


def fill(engine, n_faces: int, batch: int = 2000, order: str = "time") -> tuple[int, float]:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    pending: list[PredictionRecord] = []
    n = 0
    for rec in records(n_faces, order=order):
        pending.append(rec)
        if len(pending) == batch:
            n += write_records(engine, pending)
            pending = []
    n += write_records(engine, pending)
    return n, time.perf_counter() - t0


def _queries() -> dict[str, dict]:
    end = START + timedelta(days=DAYS)
    return {
        "30 days by day, all sites": dict(start=START, end=end, bucket="day"),
        "30 days by hour, all sites": dict(start=START, end=end, bucket="hour"),
        "7 days by hour, one site": dict(
            start=end - timedelta(days=7), end=end, bucket="hour", site="site-3"
        ),
        "30 days by day, one site": dict(start=START, end=end, bucket="day", site="site-3"),
    }


def time_queries(engine, repeat: int) -> dict[str, dict[str, float]]:  # type: ignore[no-untyped-def]
    out = {}
    for name, kw in _queries().items():
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


def time_http(url: str, repeat: int) -> dict[str, dict[str, float]]:
    """The same queries as ``GET /v1/stats`` of ``maskops serve`` on the store ``url`` (auth off,
    loopback): the whole answer, JSON included, as a client waits for it."""
    import urllib.parse
    import urllib.request

    sl = _serve_load()
    port = sl.free_port()
    work = Path(tempfile.mkdtemp(prefix="maskops-bench-stats-http-"))
    proc = _start(port, {"MASKOPS_DATABASE_URL": url, "MASKOPS_WORK_DIR": str(work)}, work / "serve.log")
    out = {}
    try:
        for name, kw in _queries().items():
            params = {"from": kw["start"].isoformat(), "to": kw["end"].isoformat(), "bucket": kw["bucket"]}
            if "site" in kw:
                params["site"] = kw["site"]
            target = f"http://127.0.0.1:{port}/v1/stats?{urllib.parse.urlencode(params)}"
            times, size = [], 0
            for i in range(repeat + 1):  # the first warms the pool
                t0 = time.perf_counter()
                with urllib.request.urlopen(target, timeout=60) as r:
                    size = len(r.read())
                if i:
                    times.append((time.perf_counter() - t0) * 1000)
            out[name] = {
                "median_ms": round(statistics.median(times), 1),
                "max_ms": round(max(times), 1),
                "bytes": size,
            }
    finally:
        sl.stop_server(proc)
    return out


def bench_stats(args: argparse.Namespace) -> dict:
    results: dict = {}
    for db in args.db.split(","):
        cluster = None
        with tempfile.TemporaryDirectory(prefix="maskops-bench-") as tmp:
            if db == "sqlite":
                url = f"sqlite:///{args.sqlite_path or Path(tmp) / 'maskops.db'}"
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
                counts = store_counts(engine)
                filled = counts["faces"] >= args.faces  # a kept store: time the queries only
                n_requests, fill_s = (0, 0.0) if filled else fill(engine, args.faces, order=args.order)
                counts = store_counts(engine)
                queries = time_queries(engine, args.repeat)
                engine.dispose()
                http = time_http(url, args.repeat) if args.http else None
            finally:
                if cluster is not None:
                    cluster.remove()
        results[db] = {
            "store": counts,
            "order": args.order,
            "fill_s": round(fill_s, 1) if n_requests else None,
            "fill_requests_per_s": round(n_requests / fill_s) if n_requests else None,
            "queries": queries,
            "http": http,
        }
        if n_requests:
            print(
                f"{db}: {counts} filled in {fill_s:.0f} s ({n_requests / fill_s:.0f} requests/s, {args.order} order)"
            )
        else:
            print(f"{db}: {counts} already filled")
        for name, q in queries.items():
            print(
                f"  {name:<28} median {q['median_ms']:7.1f} ms  max {q['max_ms']:7.1f} ms  ({q['rows']} rows)"
            )
        for name, q in (http or {}).items():
            print(
                f"  GET /v1/stats {name:<28} median {q['median_ms']:7.1f} ms  max {q['max_ms']:7.1f} ms  ({q['bytes']:,} bytes)"
            )
    return results


# ---- benches against the real server

SERVE_LOAD = ROOT / "bench"


def _serve_load():  # type: ignore[no-untyped-def]
    sys.path.insert(0, str(SERVE_LOAD))
    import serve_load

    return serve_load


def _request(port: int, jpeg: bytes, request_id: str) -> bytes:
    head_body = _serve_load().build_request(port, "/v1/detect", jpeg)
    head, _, body = head_body.partition(b"\r\n\r\n")
    return head + f"\r\nX-Request-ID: {request_id}".encode() + b"\r\n\r\n" + body


async def _load(port: int, jpeg: bytes, concurrency: int, seconds: float, prefix: str) -> dict:
    """Closed-loop load with one unique X-Request-ID per request; returns ids answered 200 and failures."""
    import asyncio

    sl = _serve_load()
    ok: list[str] = []
    failed: dict[str, int] = {}
    latencies: list[float] = []
    counter = iter(range(10**9))
    end = time.perf_counter() + seconds

    def answered(rid: str, outcome: str, sent: float, done: float) -> None:
        if outcome == "200":
            ok.append(rid)
            latencies.append((done - sent) * 1000)
        else:
            failed[outcome] = failed.get(outcome, 0) + 1

    def request_of(w: int):  # type: ignore[no-untyped-def]
        def request() -> tuple[str, bytes]:
            rid = f"{prefix}-{w}-{next(counter)}"
            return rid, _request(port, jpeg, rid)

        return request

    t0 = time.perf_counter()
    await asyncio.gather(
        *(
            sl.keepalive_client(port, request_of(w), lambda: time.perf_counter() < end, answered)
            for w in range(concurrency)
        )
    )
    elapsed = time.perf_counter() - t0
    lat = np.asarray(latencies or [float("nan")])
    return {
        "ok_ids": ok,
        "failed": failed,
        "seconds": round(elapsed, 1),
        "req_s": round(len(ok) / elapsed, 1),
        "p50_ms": round(float(np.percentile(lat, 50)), 1),
        "p99_ms": round(float(np.percentile(lat, 99)), 1),
    }


def _start(port: int, env: dict[str, str], log: Path):  # type: ignore[no-untyped-def]
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        return _serve_load().start_server("maskops", port, ROOT / "models", log)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _payload(args: argparse.Namespace) -> bytes:
    return _serve_load().payload(args.data_dir, _serve_load().DEFAULT_IMAGE)


def _stored_ids(url: str) -> list[str]:
    from sqlalchemy import select

    from maskops.monitor.schema import RequestRow

    engine = open_store(url)
    try:
        with engine.connect() as conn:
            return list(conn.scalars(select(RequestRow.request_id)))
    finally:
        engine.dispose()


def _pg(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from pgcluster import PgCluster, pg_bin_dir

    bin_dir = pg_bin_dir()
    if bin_dir is None:
        sys.exit("PostgreSQL binaries not found: apt-get install postgresql")
    cluster = PgCluster(bin_dir)
    cluster.start()
    return cluster


def bench_overhead(args: argparse.Namespace) -> dict:
    import asyncio

    jpeg = _payload(args)
    cluster = _pg(args) if "postgresql" in args.configs else None
    work = Path(tempfile.mkdtemp(prefix="maskops-bench-overhead-"))
    rows: dict[str, list[dict]] = {c: [] for c in args.configs}
    pg_url = cluster.create_database("overhead") if cluster is not None else None
    try:
        for rnd in range(args.rounds):
            for config in args.configs:
                env = {"MASKOPS_WORK_DIR": str(work / config), "MASKOPS_STORE_PREDICTIONS": "true"}
                if config == "off":
                    env["MASKOPS_STORE_PREDICTIONS"] = "false"
                elif config == "postgresql":
                    assert pg_url is not None
                    env["MASKOPS_DATABASE_URL"] = pg_url
                port = _serve_load().free_port()
                proc = _start(port, env, work / f"{config}-{rnd}.log")
                try:
                    asyncio.run(
                        _serve_load().warm_up(port, _serve_load().build_request(port, "/v1/detect", jpeg), 20)
                    )
                    res = asyncio.run(_load(port, jpeg, 8, args.seconds, f"{config}{rnd}"))
                finally:
                    _serve_load().stop_server(proc)
                res.pop("ok_ids")
                rows[config].append(res)
                print(
                    f"round {rnd} {config:<10} {res['req_s']:6.1f} req/s  p50 {res['p50_ms']} ms  p99 {res['p99_ms']} ms  failed {res['failed']}",
                    flush=True,
                )
    finally:
        if cluster is not None:
            cluster.remove()
    summary = {c: round(statistics.median(r["req_s"] for r in rows[c]), 1) for c in args.configs}
    if "off" in summary:
        for c in args.configs:
            if c != "off":
                print(
                    f"{c}: {summary[c]} req/s = {summary[c] / summary['off']:.1%} of store off ({summary['off']} req/s)"
                )
    return {"rounds": rows, "median_req_s": summary}


def _process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (from /proc)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*/children"):
            todo.extend(int(c) for c in task.read_text().split())
    return out


def _cpu_group(pids: list[int], name: str) -> Path | None:
    """A CPU cgroup of its own (``container_load.own_cpu_cgroup``) holding ``pids``."""
    from container_load import own_cpu_cgroup

    group = own_cpu_cgroup(pids[0], name)
    if group is not None:
        for pid in pids[1:]:
            (group / "cgroup.procs").write_text(str(pid))
    return group


def _remove_group(group: Path | None) -> None:
    """Move the group's processes back to the root group and remove it."""
    if group is None:
        return
    for pid in (group / "cgroup.procs").read_text().split():
        with contextlib.suppress(OSError):  # exited meanwhile
            (group.parent / "cgroup.procs").write_text(pid)
    group.rmdir()


async def _both(
    port_a: int, port_b: int, jpeg: bytes, seconds: float, prefix_a: str, prefix_b: str
) -> list[dict]:
    """``_load`` at concurrency 8 on two servers at once."""
    import asyncio

    return list(
        await asyncio.gather(
            _load(port_a, jpeg, 8, seconds, prefix_a), _load(port_b, jpeg, 8, seconds, prefix_b)
        )
    )


def bench_overhead_side_by_side(args: argparse.Namespace) -> dict:
    """Store off and store on served at the same time, each server in a CPU cgroup of its own
    (equal shares of the 2 cores; the PostgreSQL server in the store-on group), each under its own
    closed-loop load at concurrency 8 from one client: whatever else runs on the machine slows
    both alike, and the ratio of their req/s is the store's cost in throughput."""
    import asyncio

    jpeg = _payload(args)
    cluster = _pg(args) if "postgresql" in args.configs else None
    work = Path(tempfile.mkdtemp(prefix="maskops-bench-overhead-"))
    out: dict[str, dict] = {}
    try:
        for config in (c for c in args.configs if c != "off"):
            env_on = {"MASKOPS_WORK_DIR": str(work / config), "MASKOPS_STORE_PREDICTIONS": "true"}
            if config == "postgresql":
                assert cluster is not None
                env_on["MASKOPS_DATABASE_URL"] = cluster.create_database("overhead_pair")
            env_off = {"MASKOPS_WORK_DIR": str(work / f"off-{config}"), "MASKOPS_STORE_PREDICTIONS": "false"}
            port_off, port_on = _serve_load().free_port(), _serve_load().free_port()
            proc_off = _start(port_off, env_off, work / f"off-{config}.log")
            proc_on = _start(port_on, env_on, work / f"{config}.log")
            on_pids = _process_tree(proc_on.pid)
            if cluster is not None and config == "postgresql":
                postmaster = int((cluster.data / "postmaster.pid").read_text().split()[0])
                on_pids += _process_tree(postmaster)
            tag = f"maskops-bench-{os.getpid()}"
            groups = [_cpu_group(_process_tree(proc_off.pid), f"{tag}-off"), _cpu_group(on_pids, f"{tag}-on")]
            if None in groups:
                print("cannot make CPU cgroups here: the two servers share the CPU without equal shares")
            rounds = []
            try:
                for port in (port_off, port_on):
                    asyncio.run(
                        _serve_load().warm_up(port, _serve_load().build_request(port, "/v1/detect", jpeg), 20)
                    )

                for rnd in range(args.rounds):
                    off, on = asyncio.run(
                        _both(port_off, port_on, jpeg, args.seconds, f"off{rnd}", f"{config}{rnd}")
                    )
                    off.pop("ok_ids"), on.pop("ok_ids")
                    ratio = on["req_s"] / off["req_s"] if off["req_s"] else float("nan")
                    rounds.append({"off": off, "on": on, "ratio": round(ratio, 4)})
                    print(
                        f"round {rnd} {config:<10} off {off['req_s']:6.1f} req/s  on {on['req_s']:6.1f} req/s"
                        f"  = {ratio:.1%}  (p99 {off['p99_ms']} / {on['p99_ms']} ms, failed {off['failed']} / {on['failed']})",
                        flush=True,
                    )
            finally:
                for proc in (proc_off, proc_on):
                    _serve_load().stop_server(proc)
                for group in groups:
                    _remove_group(group)
            ratios = [r["ratio"] for r in rounds]
            total_off = sum(r["off"]["req_s"] for r in rounds)
            total_on = sum(r["on"]["req_s"] for r in rounds)
            out[config] = {
                "rounds": rounds,
                "median_ratio": round(statistics.median(ratios), 4),
                "pooled_ratio": round(total_on / total_off, 4),
                "cgroups": None not in groups,
            }
            print(
                f"{config}: store on / off side by side: median of {len(ratios)} rounds "
                f"{statistics.median(ratios):.1%} (min {min(ratios):.1%}, max {max(ratios):.1%}), "
                f"pooled {total_on / total_off:.1%}",
                flush=True,
            )
    finally:
        if cluster is not None:
            cluster.remove()
    return out


def bench_outage(args: argparse.Namespace) -> dict:
    import asyncio
    import threading

    jpeg = _payload(args)
    cluster = _pg(args)
    work = Path(tempfile.mkdtemp(prefix="maskops-bench-outage-"))
    try:
        url = cluster.create_database("outage")
        port = _serve_load().free_port()
        proc = _start(port, {"MASKOPS_WORK_DIR": str(work), "MASKOPS_DATABASE_URL": url}, work / "serve.log")
        events: list[str] = []

        def outage() -> None:
            time.sleep(args.down_at)
            cluster.stop()
            events.append(f"stopped at {args.down_at} s")
            time.sleep(args.down)
            cluster.start()
            events.append(f"started at {args.down_at + args.down} s")

        try:
            t = threading.Thread(target=outage)
            t.start()
            res = asyncio.run(_load(port, jpeg, 8, args.seconds, "outage"))
            t.join()
            ids = set(res["ok_ids"])
            deadline = time.monotonic() + 120
            stored: list[str] = []
            while time.monotonic() < deadline:
                stored = _stored_ids(url)
                if len(stored) >= len(ids):
                    break
                time.sleep(1)
            metrics = _metrics(port)
        finally:
            _serve_load().stop_server(proc)
    finally:
        cluster.remove()
    out = {
        "seconds": res["seconds"],
        "answered": len(ids),
        "failed": res["failed"],
        "req_s": res["req_s"],
        "stored": len(stored),
        "stored_distinct": len(set(stored)),
        "missing": len(ids - set(stored)),
        "extra": len(set(stored) - ids),
        "events": events,
        "counters": metrics,
    }
    print(json.dumps(out, indent=2))
    return out


def _metrics(port: int) -> dict[str, float]:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("maskops_store_records_") and "_created" not in line:
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def bench_kill(args: argparse.Namespace) -> dict:
    import asyncio
    import signal
    import threading

    jpeg = _payload(args)
    work = Path(tempfile.mkdtemp(prefix="maskops-bench-kill-"))
    url = f"sqlite:///{work / 'maskops.db'}"
    env = {"MASKOPS_WORK_DIR": str(work), "MASKOPS_DATABASE_URL": url}
    port = _serve_load().free_port()
    proc = _start(port, env, work / "serve-1.log")

    def killer() -> None:
        time.sleep(args.seconds / 2)
        proc.send_signal(signal.SIGKILL)

    t = threading.Thread(target=killer)
    t.start()
    res = asyncio.run(_load(port, jpeg, 8, args.seconds, "kill"))
    t.join()
    proc.wait()
    ids = set(res["ok_ids"])
    before_restart = set(_stored_ids(url))
    proc = _start(port, env, work / "serve-2.log")  # replays the spool left by the killed process
    try:
        time.sleep(3)
        after = _stored_ids(url)
    finally:
        _serve_load().stop_server(proc)
    out = {
        "answered_before_kill": len(ids),
        "stored_before_restart": len(before_restart & ids),
        "stored_after_restart": len(set(after) & ids),
        "lost": len(ids - set(after)),
        "duplicates": len(after) - len(set(after)),
        "failed_requests": res["failed"],
    }
    print(json.dumps(out, indent=2))
    return out


def bench_cost(args: argparse.Namespace) -> dict:
    from maskops.monitor.capture import build_record
    from maskops.monitor.features import image_quality
    from maskops.types import Detections

    jpeg = _payload(args)
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)

    class Result:  # four faces, as the payload gives
        detections = Detections(
            xyxy=[[10, 10, 60, 70], [100, 20, 150, 80], [200, 30, 250, 90], [300, 40, 350, 100]],
            confidence=[0.9, 0.8, 0.7, 0.5],
            class_id=[0, 1, 0, -1],
            face_score=[0.9, 0.9, 0.9, 0.9],
        )
        probs = np.array([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.7, 0.2, 0.1], [0.4, 0.35, 0.25]], np.float32)
        reasons = (None, None, None, "low_confidence")

    names = ["with_mask", "without_mask", "mask_weared_incorrect"]

    def one(i: int):  # type: ignore[no-untyped-def]
        return build_record(
            Result(),
            names,
            request_id=f"cost-{i}",
            source="api",
            width=640,
            height=480,
            latency_ms=30.0,
            stages_ms={"decode": 2, "detect": 10, "classify": 5},
            quality=image_quality(image).as_dict(),
            model_name="facemask",
            model_version="x",
            detector="yunet_cal",
        )

    n = args.records
    one(0)
    t0 = time.thread_time()
    records = [one(i) for i in range(n)]
    request_path_ms = (time.thread_time() - t0) * 1000 / n
    t0 = time.thread_time()
    for _ in range(n):
        image_quality(image)
    quality_ms = (time.thread_time() - t0) * 1000 / n
    print(
        f"request path: build_record + quality features {request_path_ms:.3f} ms/image (quality alone {quality_ms:.3f})"
    )
    out: dict = {
        "request_path_ms": round(request_path_ms, 3),
        "quality_ms": round(quality_ms, 3),
        "writer_ms": {},
    }
    cluster = _pg(args)
    try:
        for db in ("sqlite", "postgresql"):
            for batch in (1, 5, 25, 100):
                with tempfile.TemporaryDirectory() as tmp:
                    url = (
                        f"sqlite:///{Path(tmp) / 'm.db'}"
                        if db == "sqlite"
                        else cluster.create_database(f"cost{batch}")
                    )
                    engine = open_store(url)
                    renamed = [
                        PredictionRecord(**{**r.__dict__, "request_id": f"{db}-{batch}-{i}"})
                        for i, r in enumerate(records)
                    ]
                    t0 = time.thread_time()
                    for k in range(0, n, batch):
                        write_records(engine, renamed[k : k + batch])
                    ms = (time.thread_time() - t0) * 1000 / n
                    engine.dispose()
                out["writer_ms"][f"{db} batch {batch}"] = round(ms, 3)
                print(f"writer: {db:<10} batch {batch:>3}: {ms:.3f} ms CPU per record", flush=True)
    finally:
        cluster.remove()
    return out


def machine() -> str:
    """CPU model, cores and Python version of this machine."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, python {platform.python_version()}"


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
    stats.add_argument("--order", choices=["time", "random"], default="time", help="the records' write order")
    stats.add_argument(
        "--sqlite-path", type=Path, default=None, help="keep the SQLite store in this file (reused if filled)"
    )
    stats.add_argument("--json", type=Path, default=None)
    stats.add_argument(
        "--http", action="store_true", help="also time GET /v1/stats of maskops serve on the same store"
    )
    data_dir = Path(os.environ.get("MASKOPS_DATA_DIR", ROOT.parent / "shared" / "datasets"))
    overhead = sub.add_parser("overhead", help="throughput with the store off, on SQLite, on PostgreSQL")
    overhead.add_argument("--configs", nargs="+", default=["off", "sqlite", "postgresql"])
    overhead.add_argument("--rounds", type=int, default=3)
    overhead.add_argument("--seconds", type=float, default=20.0)
    overhead.add_argument(
        "--side-by-side",
        action="store_true",
        help="store off and on served at the same time, each in a CPU cgroup of its own",
    )
    outage = sub.add_parser("outage", help="PostgreSQL stopped and started during load")
    outage.add_argument("--seconds", type=float, default=90.0)
    outage.add_argument("--down-at", type=float, default=30.0)
    outage.add_argument("--down", type=float, default=30.0)
    kill = sub.add_parser("kill", help="kill -9 of the server during load, then a restart")
    kill.add_argument("--seconds", type=float, default=20.0)
    cost = sub.add_parser("cost", help="the store's CPU per served image (request path and writer)")
    cost.add_argument("--records", type=int, default=2000)
    for p in (overhead, outage, kill, cost):
        p.add_argument("--data-dir", type=Path, default=data_dir)
        p.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    results = {
        "bench": args.bench,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "results": {
            "stats": bench_stats,
            "overhead": bench_overhead_side_by_side
            if getattr(args, "side_by_side", False)
            else bench_overhead,
            "outage": bench_outage,
            "kill": bench_kill,
            "cost": bench_cost,
        }[args.bench](args),
    }
    if args.json:
        args.json.write_text(json.dumps(results, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
