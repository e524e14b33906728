"""Serving replicas: one ``maskops serve`` pinned to one core vs two pinned to one core each, on one PostgreSQL.

    .venv/bin/python bench/replicas.py                       # 30 s per phase, 8 connections
    .venv/bin/python bench/replicas.py --seconds 10 --json work/bench/replicas.json

Both phases use the same deployment as replicas behind a load balancer: a throwaway PostgreSQL on
loopback (``tests/monitor/pgcluster.py``) as ``MASKOPS_DATABASE_URL`` (prediction store, API keys,
shared rate-limit counter), ``MASKOPS_AUTH=true`` with one key created by ``maskops keys create``,
a per-key limit far above the load (so every request does the key read and the counter UPSERT),
one inference worker per server, the shipped models. Server 1 runs under ``taskset -c 0``, server 2
under ``taskset -c 1``.

The load is ``bench/serve_load.py``'s closed-loop client and payload (640x480 JPEG, four faces,
``POST /v1/detect``): with two replicas its connections are dealt round-robin between the two ports
(the load balancer), so the client is the same and only the servers behind it change. The client
and PostgreSQL are not pinned: they share the two cores with the servers.

Prints the table and writes JSON (req/s, p50/p99, errors, the ratio, the load average before the run
and whether a training run was using the machine).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
sys.path.insert(0, str(ROOT / "tests" / "monitor"))

import serve_load as sl  # noqa: E402


def _request(port: int, jpeg: bytes, key: str) -> bytes:
    head, _, body = sl.build_request(port, "/v1/detect", jpeg).partition(b"\r\n\r\n")
    return head + f"\r\nX-API-Key: {key}".encode() + b"\r\n\r\n" + body


def _start(port: int, core: int, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    cmd = ["taskset", "-c", str(core), sys.executable, "-m", "maskops.cli", "serve", "--port", str(port)]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}; see {log}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit(f"server not ready after 180 s; see {log}")


async def _phase(ports: list[int], requests: dict[int, bytes], concurrency: int, seconds: float) -> dict:
    """Connections dealt round-robin over ``ports``; one ``serve_load`` phase per port, run together."""
    share = [
        concurrency // len(ports) + (1 if i < concurrency % len(ports) else 0) for i in range(len(ports))
    ]
    for port in ports:
        await sl.warm_up(port, requests[port], 10)
    cpu0 = time.process_time()
    results = await asyncio.gather(
        *(sl.run_phase(f"replica:{p}", p, requests[p], c, seconds) for p, c in zip(ports, share, strict=True))
    )
    client_cpu = time.process_time() - cpu0
    phases = [ph for ph, _ in results]
    elapsed = max(ph.seconds for ph in phases)
    lat = np.asarray([x for ph in phases for x in ph.latencies_ms] or [float("nan")])
    statuses: dict[str, int] = {}
    for ph in phases:
        for code, n in ph.statuses.items():
            statuses[str(code)] = statuses.get(str(code), 0) + n
    return {
        "replicas": len(ports),
        "concurrency": concurrency,
        "seconds": round(elapsed, 1),
        "ok": sum(ph.ok for ph in phases),
        "req_s": round(sum(ph.ok for ph in phases) / elapsed, 1),
        "req_s_per_replica": [round(ph.ok / ph.seconds, 1) for ph in phases],
        "p50_ms": round(float(np.percentile(lat, 50)), 1),
        "p99_ms": round(float(np.percentile(lat, 99)), 1),
        "errors": sum(ph.errors for ph in phases),
        "statuses": statuses,
        "client_cpu_share": round(client_cpu / elapsed, 2),  # of one core, taken from the servers' cores
    }


def _training_running() -> bool:
    return subprocess.run(["pgrep", "-f", "maskops train"], capture_output=True).returncode == 0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=30.0, help="measured duration of each phase")
    p.add_argument("--concurrency", type=int, default=8, help="connections of the load client")
    p.add_argument("--models-dir", type=Path, default=ROOT / "models")
    p.add_argument("--data-dir", type=Path, default=ROOT.parent / "shared" / "datasets")
    p.add_argument("--json", type=Path, default=ROOT / "work" / "bench" / "replicas.json")
    args = p.parse_args()
    if shutil.which("taskset") is None:
        raise SystemExit("taskset not found (util-linux)")
    from pgcluster import PgCluster, pg_bin_dir

    bin_dir = pg_bin_dir()
    if bin_dir is None:
        raise SystemExit("PostgreSQL binaries not found: apt-get install postgresql")
    load_before = os.getloadavg()
    training = _training_running()
    cluster = PgCluster(bin_dir)
    cluster.start()
    work = Path(tempfile.mkdtemp(prefix="maskops-bench-replicas-"))
    procs: list[subprocess.Popen[bytes]] = []
    try:
        url = cluster.create_database("maskops_replicas")
        env = {k: v for k, v in os.environ.items() if not k.startswith("MASKOPS_")}
        env.update(
            MASKOPS_WORK_DIR=str(work),
            MASKOPS_MODELS_DIR=str(args.models_dir),
            MASKOPS_DATABASE_URL=url,
            MASKOPS_AUTH="true",
            MASKOPS_WORKERS="1",
            MASKOPS_LOG_FORMAT="json",
            MASKOPS_LOG_LEVEL="WARNING",
        )
        made = subprocess.run(
            [sys.executable, "-m", "maskops.cli", "keys", "create", "bench", "--rate", "100000"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        key = made.stdout.strip().splitlines()[-1]
        jpeg = sl.payload(args.data_dir, sl.DEFAULT_IMAGE)
        ports = [sl.free_port(), sl.free_port()]
        requests = {port: _request(port, jpeg, key) for port in ports}
        rows = []
        procs.append(_start(ports[0], 0, env, work / "replica0.log"))
        rows.append(asyncio.run(_phase(ports[:1], requests, args.concurrency, args.seconds)))
        procs.append(_start(ports[1], 1, env, work / "replica1.log"))
        rows.append(asyncio.run(_phase(ports, requests, args.concurrency, args.seconds)))
    finally:
        for proc in procs:
            sl.stop_server(proc)
        cluster.remove()
    ratio = rows[1]["req_s"] / rows[0]["req_s"] if rows[0]["req_s"] else float("nan")
    result = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join([".venv/bin/python", "bench/replicas.py", *sys.argv[1:]]),
        "cpus": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "training_running": training,
        "rows": rows,
        "ratio_2_vs_1": round(ratio, 2),
        "target": ">= 1.7x",
    }
    print("| replicas | connections | req/s | per replica | p50 ms | p99 ms | errors |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['replicas']} | {r['concurrency']} | {r['req_s']} | {r['req_s_per_replica']} | "
            f"{r['p50_ms']} | {r['p99_ms']} | {r['errors']} |"
        )
    print(f"2 vs 1 replica: {ratio:.2f}x; load average before {load_before}; training: {training}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
