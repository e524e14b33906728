"""Load test of ``POST /v1/detect`` against the real server on loopback, side by side with a reference.

    .venv/bin/python bench/serve_load.py                      # both servers, concurrency 1, 8, 32
    .venv/bin/python bench/serve_load.py --servers maskops --c8-seconds 60 --seconds 20

Each server runs as its own uvicorn subprocess on 127.0.0.1 with the shipped models
(``models/facemask.onnx`` + YuNet): ``maskops serve`` as ``make run`` starts it, and
``bench/reference_server.py`` (model called inline per request, the public projects' style).
The payload is a 640x480 JPEG of a real photo with four faces from ``facemask-voc``. The load is
closed-loop: N connections each send the next request when the previous answer arrived. The
client is a small keep-alive HTTP/1.1 client on asyncio that sends pre-built request bytes, so it
takes little of the machine's CPU from the server (both share the same cores).

Prints a markdown table (req/s, p50/p99 latency, errors) and the maskops/reference ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
DEFAULT_IMAGE = "maksssksksss103.jpg"  # four annotated faces, 400x300 (4:3)


@dataclass
class Phase:
    server: str
    concurrency: int
    seconds: float
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    statuses: dict[int, int] = field(default_factory=dict)

    @property
    def ok(self) -> int:
        return len(self.latencies_ms)

    def row(self) -> dict[str, float | int | str]:
        lat = np.asarray(self.latencies_ms or [float("nan")])
        return {
            "server": self.server,
            "concurrency": self.concurrency,
            "seconds": round(self.seconds, 1),
            "requests": self.ok + self.errors,
            "req_s": round(self.ok / self.seconds, 1),
            "p50_ms": round(float(np.percentile(lat, 50)), 1),
            "p99_ms": round(float(np.percentile(lat, 99)), 1),
            "errors": self.errors,
        }


def payload(data_dir: Path, name: str) -> bytes:
    """The dataset photo resized to 640x480, as a JPEG (quality 90)."""
    path = data_dir / "facemask-voc" / "images" / name
    image = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise SystemExit(f"cannot read {path} (set MASKOPS_DATA_DIR to the shared datasets)")
    image = cv2.resize(image, (640, 480), interpolation=cv2.INTER_CUBIC)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return buf.tobytes()


def build_request(port: int, path: str, jpeg: bytes) -> bytes:
    boundary = "maskopsbench7f3a"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="bench.jpg"\r\n'
            f"Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + jpeg
        + f"\r\n--{boundary}--\r\n".encode()
    )
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: keep-alive\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    return head + body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length, close = 0, False
    for line in lines[1:]:
        k, _, v = line.partition(":")
        k = k.strip().lower()
        if k == "content-length":
            length = int(v)
        elif k == "connection" and v.strip().lower() == "close":
            close = True
    body = await reader.readexactly(length)
    return status, body, close


async def keepalive_client(
    port: int,
    request: Callable[[], tuple[str, bytes]],
    running: Callable[[], bool],
    answered: Callable[[str, str, float, float], None],
    on_response: Callable[[int, bytes], None] | None = None,
) -> None:
    """One keep-alive connection sending ``request()`` (an id and the raw HTTP bytes) while
    ``running()``; each outcome goes to ``answered(id, status or error name, sent, done)``, both times
    ``time.perf_counter()``, and each response's status and body to ``on_response`` when given. A
    dropped or failed connection is reopened after 50 ms."""
    reader = writer = None
    while running():
        rid, data = request()
        sent = time.perf_counter()
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            assert reader is not None
            writer.write(data)
            await writer.drain()
            status, body, close = await asyncio.wait_for(_read_response(reader), 60)
            answered(rid, str(status), sent, time.perf_counter())
            if on_response is not None:
                on_response(status, body)
            if close:
                writer.close()
                reader = writer = None
        except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as exc:
            answered(rid, type(exc).__name__, sent, time.perf_counter())
            if writer is not None:
                writer.close()
            reader = writer = None
            await asyncio.sleep(0.05)
    if writer is not None:
        writer.close()


async def _worker(port: int, request: bytes, end: float, phase: Phase, sample: list[bytes]) -> None:
    """``keepalive_client`` sending ``request`` until ``end``: statuses and latencies into ``phase``,
    the first 200 body into ``sample``."""

    def answered(_rid: str, outcome: str, sent: float, done: float) -> None:
        if not outcome.isdigit():
            phase.errors += 1
            return
        status = int(outcome)
        phase.statuses[status] = phase.statuses.get(status, 0) + 1
        if status == 200:
            phase.latencies_ms.append((done - sent) * 1000.0)
        else:
            phase.errors += 1

    def keep(status: int, body: bytes) -> None:
        if status == 200 and not sample:
            sample.append(body)

    await keepalive_client(
        port, lambda: ("", request), lambda: time.perf_counter() < end, answered, on_response=keep
    )


async def run_phase(
    server: str, port: int, request: bytes, concurrency: int, seconds: float
) -> tuple[Phase, bytes]:
    phase = Phase(server, concurrency, seconds)
    sample: list[bytes] = []
    start = time.perf_counter()
    end = start + seconds
    await asyncio.gather(*(_worker(port, request, end, phase, sample) for _ in range(concurrency)))
    phase.seconds = time.perf_counter() - start
    return phase, sample[0] if sample else b""


async def warm_up(port: int, request: bytes, n: int) -> bytes:
    """``n`` sequential requests (first calls are slow); returns the last 200 body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    body = b""
    try:
        for _ in range(n):
            writer.write(request)
            await writer.drain()
            status, data, close = await _read_response(reader)
            if status == 200:
                body = data
            if close:
                break
    finally:
        writer.close()
    return body


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(kind: str, port: int, models_dir: Path, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "MASKOPS_MODELS_DIR": str(models_dir)}
    if kind == "maskops":
        cmd = [sys.executable, "-m", "maskops.cli", "serve", "--port", str(port)]
    else:
        cmd = [
            sys.executable,
            "-m",
            "uvicorn",
            "--app-dir",
            str(BENCH),
            "reference_server:app",
            "--port",
            str(port),
        ]
    fh = log.open("wb")
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    url = f"http://127.0.0.1:{port}/" + ("ready" if kind == "maskops" else "health")
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{kind} server exited with {proc.returncode}; see {log}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit(f"{kind} server not ready after 120 s; see {log}")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def table(rows: list[dict[str, float | int | str]]) -> str:
    cols = ["server", "concurrency", "seconds", "requests", "req_s", "p50_ms", "p99_ms", "errors"]
    heads = ["server", "concurrency", "seconds", "requests", "req/s", "p50 ms", "p99 ms", "errors"]
    out = ["| " + " | ".join(heads) + " |", "|" + "---|" * len(cols)]
    out += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--servers", nargs="+", default=["maskops", "reference"], choices=["maskops", "reference"])
    p.add_argument("--concurrency", nargs="+", type=int, default=[1, 8, 32])
    p.add_argument("--seconds", type=float, default=20.0, help="duration of each phase but concurrency 8")
    p.add_argument(
        "--c8-seconds", type=float, default=60.0, help="duration at concurrency 8 (target: >= 60 s)"
    )
    p.add_argument("--warmup", type=int, default=30, help="requests sent before measuring")
    p.add_argument("--models-dir", type=Path, default=REPO / "models")
    p.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("MASKOPS_DATA_DIR", REPO.parent / "shared" / "datasets")),
    )
    p.add_argument("--image", default=DEFAULT_IMAGE)
    p.add_argument("--json", type=Path, default=None, help="also write the rows as JSON here")
    args = p.parse_args()

    if not (args.models_dir / "facemask.onnx").is_file():
        raise SystemExit(f"no facemask.onnx in {args.models_dir}: ship a model first")
    jpeg = payload(args.data_dir, args.image)
    print(f"payload: {args.image} resized to 640x480, {len(jpeg)} bytes; cores: {os.cpu_count()}", flush=True)
    rows: list[dict[str, float | int | str]] = []
    logs = Path(tempfile.mkdtemp(prefix="maskops-bench-"))
    for kind in args.servers:
        port = free_port()
        proc = start_server(kind, port, args.models_dir, logs / f"{kind}.log")
        try:
            request = build_request(port, "/v1/detect", jpeg)
            sample = asyncio.run(warm_up(port, request, args.warmup))
            faces = len(json.loads(sample)["faces"]) if sample else 0
            print(f"{kind}: ready on port {port}; the payload gives {faces} faces", flush=True)
            for c in args.concurrency:
                seconds = args.c8_seconds if c == 8 else args.seconds
                phase, _ = asyncio.run(run_phase(kind, port, request, c, seconds))
                row = phase.row()
                rows.append(row)
                print(
                    f"  c={c}: {row['req_s']} req/s, p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms, "
                    f"errors {row['errors']} {phase.statuses}",
                    flush=True,
                )
        finally:
            stop_server(proc)
    print()
    print(table(rows))
    by = {(r["server"], r["concurrency"]): r for r in rows}
    if {"maskops", "reference"} <= set(args.servers):
        print()
        for c in args.concurrency:
            m, ref = by[("maskops", c)], by[("reference", c)]
            ratio = float(m["req_s"]) / float(ref["req_s"]) if float(ref["req_s"]) else float("inf")
            print(
                f"- concurrency {c}: maskops/reference throughput {ratio:.2f}x, "
                f"p99 {m['p99_ms']} ms vs {ref['p99_ms']} ms"
            )
    if ("maskops", 8) in by:
        r = by[("maskops", 8)]
        met = (
            float(r["req_s"]) >= 40
            and float(r["p99_ms"]) <= 150
            and r["errors"] == 0
            and float(r["seconds"]) >= 60
        )
        print(
            f"\ntarget (>= 40 req/s, p99 <= 150 ms, 0 errors over >= 60 s at concurrency 8): "
            f"{'met' if met else 'NOT met'}"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    print(f"\nserver logs: {logs}")


if __name__ == "__main__":
    main()
