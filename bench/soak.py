"""Soak test: the real ``maskops serve`` under mixed traffic at 80% of its measured capacity.

    .venv/bin/python bench/soak.py                                  # 10 minutes, concurrency 8, load 0.8
    .venv/bin/python bench/soak.py --minutes 1 --window-seconds 15 --json work/bench/soak.json
    .venv/bin/python bench/soak.py --minutes 10 --hot-swap 30        # also reload the models every 30 s

One uvicorn subprocess on loopback (``bench/serve_load.py``'s ``start_server``), the shipped models
(a copy of them with ``--hot-swap``), the embedded SQLite prediction store in a temp work dir. The
traffic mix, per request: single ``POST /v1/detect`` (a facemask-voc test photo), ``/v1/detect/batch``
(four of them), ``/v1/classify`` (a facemask-photos face, or a malaria cell with ``model=malaria``),
one frame over the ``/v1/stream`` WebSocket (each client keeps its connection and waits for the
answer), and 5% bad uploads (a text file, a truncated JPEG, a PNG whose header declares 400 MP, an
11 MB body) that must get a 4xx.

Phases: warm-up (closed loop, not measured), capacity (closed loop at the concurrency: completed
requests per second of the same mix), then the soak: the same clients paced to ``--load`` x capacity
(each client fires on its own schedule; a late request goes at once and is counted as late).

Recorded per window (``--window-seconds``, one minute by default): requests, errors by kind, p50/p99
latency of the good requests (all kinds and per kind), the server's RSS. At the end the server is
stopped (SIGINT) and the prediction store must hold exactly one record per good image served (one per
single/classify request and stream frame, four per batch) over the whole run.

RSS after warm-up and after the run are both read after ``--idle-seconds`` without traffic (the
server hands its free heap back to the OS after ``MASKOPS_IDLE_TRIM_S`` quiet seconds): under load
glibc's arenas move in ~11 MB steps (this machine: 320-415 MB within minutes, no trend), so a point
read under load says more about the moment than about a leak. The drift from the first to the last
window under load is reported beside it.

Criteria: 0 server errors (5xx, dropped connections, timeouts), 0 failed good requests, every bad
upload a 4xx, RSS at the end within 10% of after warm-up, p99 of the last window at most
``--p99-ratio`` x the first's, the store's count exact (and, with ``--hot-swap``, every reload
answered as expected: 200, or 409 for the corrupt file written every third time).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import random
import shutil
import sqlite3
import struct
import sys
import tempfile
import time
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import serve_load as sl  # noqa: E402

MIX = {"single": 0.40, "batch": 0.15, "classify": 0.25, "stream": 0.15, "bad": 0.05}
BATCH_SIZE = 4
TIMEOUT_S = 60.0
GOOD = "ok"
REJECTED = "rejected"  # a bad upload answered 4xx: what it should get
SERVER_SIDE = ("server_error", "connection", "timeout")  # failures of the server, whatever was sent


# --- pure helpers ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """One finished request: when it ended (seconds since the phase began), what it was, how it went."""

    t: float
    kind: str
    outcome: str  # "ok", "rejected", or the failure kind
    latency_ms: float
    records: int = 0  # prediction-store records the server owes for it


def pick_kinds(weights: dict[str, float], n: int, seed: int) -> list[str]:
    """``n`` request kinds drawn with ``weights`` (reproducible with ``seed``)."""
    if not weights or any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
        raise ValueError(f"weights must be non-negative with a positive sum, got {weights}")
    rng = random.Random(seed)
    kinds = list(weights)
    return rng.choices(kinds, weights=[weights[k] for k in kinds], k=n)


def outcome_of(kind: str, status: int, body: dict[str, Any] | None) -> str:
    """The outcome of an HTTP answer: ``ok`` / ``rejected`` when it is what the request deserved."""
    if status >= 500:
        return "server_error"
    if kind == "bad":
        return REJECTED if 400 <= status < 500 else "bad_accepted"
    if status != 200:
        return f"http_{status}"
    if kind == "batch" and (body is None or body.get("failed") != 0):
        return "batch_item_failed"
    return GOOD


def records_of(kind: str, outcome: str) -> int:
    """Prediction-store records a request owes: one per image served."""
    if outcome != GOOD:
        return 0
    return BATCH_SIZE if kind == "batch" else 1


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (linear interpolation), ``None`` for no values."""
    if not values:
        return None
    return round(float(np.percentile(np.asarray(values, dtype=float), q)), 1)


def summarise(samples: Sequence[Sample], seconds: float) -> dict[str, Any]:
    """Counts, rate and latency of a set of samples (latency of the good requests only)."""
    outcomes = Counter(s.outcome for s in samples)
    good = [s.latency_ms for s in samples if s.outcome == GOOD]
    per_kind: dict[str, dict[str, Any]] = {}
    for kind in sorted({s.kind for s in samples}):
        of = [s for s in samples if s.kind == kind]
        lat = [s.latency_ms for s in of if s.outcome in (GOOD, REJECTED)]
        per_kind[kind] = {
            "requests": len(of),
            "errors": sum(s.outcome not in (GOOD, REJECTED) for s in of),
            "p50_ms": percentile(lat, 50),
            "p99_ms": percentile(lat, 99),
        }
    return {
        "requests": len(samples),
        "req_s": round(len(samples) / seconds, 2) if seconds > 0 else None,
        "good": outcomes[GOOD],
        "rejected_bad": outcomes[REJECTED],
        "errors": {k: n for k, n in sorted(outcomes.items()) if k not in (GOOD, REJECTED)},
        "p50_ms": percentile(good, 50),
        "p99_ms": percentile(good, 99),
        "per_kind": per_kind,
    }


def windows(samples: Sequence[Sample], window_s: float, duration_s: float) -> list[dict[str, Any]]:
    """``summarise`` per window of ``window_s`` seconds (the last one may be shorter; a sample ending
    after ``duration_s`` counts in the last window)."""
    if window_s <= 0:
        raise ValueError(f"window_s must be > 0, got {window_s}")
    n = max(1, int(np.ceil(duration_s / window_s - 1e-9)))
    buckets: list[list[Sample]] = [[] for _ in range(n)]
    for s in samples:
        buckets[min(n - 1, max(0, int(s.t // window_s)))].append(s)
    rows = []
    for i, bucket in enumerate(buckets):
        start = i * window_s
        length = min(window_s, duration_s - start) if i < n - 1 else duration_s - start
        rows.append({"window": i + 1, "start_s": round(start, 1), **summarise(bucket, max(length, 1e-9))})
    return rows


def rss_drift(rows: Sequence[dict[str, Any]]) -> float | None:
    """Relative RSS change from the first window's last sample to the last window's (``None``
    without two samples)."""
    first, last = rows[0].get("rss_kb"), rows[-1].get("rss_kb")
    if len(rows) < 2 or not first or last is None:
        return None
    return round((last - first) / first, 4)


def criteria(
    total: dict[str, Any],
    rows: Sequence[dict[str, Any]],
    rss_warm_kb: int,
    rss_end_kb: int,
    store_expected: int,
    store_count: int | None,
    *,
    rss_tolerance: float = 0.10,
    p99_ratio: float = 1.5,
    reloads: dict[str, int] | None = None,
) -> dict[str, dict[str, Any]]:
    """Each criterion with its measured value, its target and whether it passed."""
    errors: dict[str, int] = total["errors"]
    server = sum(n for k, n in errors.items() if k in SERVER_SIDE)
    kinds: dict[str, dict[str, Any]] = total["per_kind"]
    failed_good = sum(v["errors"] for k, v in kinds.items() if k != "bad")
    failed_bad = kinds.get("bad", {}).get("errors", 0)  # accepted, 5xx or no answer
    rss_change = (rss_end_kb - rss_warm_kb) / rss_warm_kb if rss_warm_kb else float("inf")
    first, last = rows[0]["p99_ms"], rows[-1]["p99_ms"]
    ratio = (last / first) if first and last is not None else None
    out: dict[str, dict[str, Any]] = {
        "server_errors": {"value": server, "target": "0", "pass": server == 0},
        "failed_good_requests": {"value": failed_good, "target": "0", "pass": failed_good == 0},
        "bad_uploads_4xx": {
            "value": failed_bad,
            "target": "0 bad uploads without a 4xx",
            "pass": failed_bad == 0,
        },
        "rss_end_vs_warm": {
            "value": round(rss_change, 4),
            "target": f"<= {rss_tolerance:+.0%}",
            "pass": rss_change <= rss_tolerance,
        },
        "p99_last_vs_first_window": {
            "value": None if ratio is None else round(ratio, 3),
            "target": f"<= {p99_ratio}",
            "pass": ratio is not None and ratio <= p99_ratio,
        },
        "store_count": {
            "value": store_count,
            "target": f"== {store_expected} (good images served)",
            "pass": store_count == store_expected,
        },
    }
    if reloads is not None:
        bad = sum(n for k, n in reloads.items() if k not in ("ok", "refused_as_expected"))
        out["reloads"] = {
            "value": reloads,
            "target": "every reload 200, or 409 for a corrupt file",
            "pass": bad == 0,
        }
    return out


# --- payloads -------------------------------------------------------------------------------------


def multipart(files: Sequence[tuple[str, str, str, bytes]]) -> tuple[str, bytes]:
    """(content type, body) of a multipart form of ``(field, filename, content type, data)`` files."""
    boundary = "maskopssoak5e1d"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{f}"; filename="{n}"\r\n'
        f"Content-Type: {ct}\r\n\r\n".encode()
        + data
        + b"\r\n"
        for f, n, ct, data in files
    ]
    return f"multipart/form-data; boundary={boundary}", b"".join(parts) + f"--{boundary}--\r\n".encode()


def http_request(port: int, path: str, content_type: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: keep-alive\r\n"
        f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    return head + body


def _jpeg(image: np.ndarray, long_side: int = 640) -> bytes:
    h, w = image.shape[:2]
    scale = long_side / max(h, w)
    if scale < 1:
        image = cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return buf.tobytes()


def _read(path: Path) -> np.ndarray:
    image = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise SystemExit(f"cannot read {path} (set --data-dir to the shared datasets)")
    return image


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def huge_png(width: int = 20000, height: int = 20000) -> bytes:
    """A small, complete PNG whose header declares ``width`` x ``height`` pixels (a decompression bomb's header)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (width + 1) * 4)  # the first rows only: the header is what is judged
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )


def bad_uploads(jpeg: bytes) -> list[tuple[str, str, bytes]]:
    """(filename, content type, data) of uploads the server must refuse with a 4xx."""
    rng = np.random.default_rng(0)
    oversized = b"\xff\xd8\xff\xe0" + rng.integers(0, 256, 11 * 1024 * 1024, dtype=np.uint8).tobytes()
    return [
        ("notes.txt", "text/plain", b"not an image, just some text\n" * 40),
        ("truncated.jpg", "image/jpeg", jpeg[: len(jpeg) // 2]),
        ("huge.png", "image/png", huge_png()),
        ("oversized.jpg", "image/jpeg", oversized),
    ]


@dataclass
class Payloads:
    """Pre-built request bytes per kind (HTTP) and the stream's frames."""

    http: dict[str, list[bytes]] = field(default_factory=dict)
    frames: list[bytes] = field(default_factory=list)


def build_payloads(port: int, data_dir: Path, n_photos: int = 12) -> Payloads:
    """Requests from real photos: facemask-voc test photos, facemask-photos faces, malaria cells."""
    voc = data_dir / "facemask-voc"
    names = json.loads((voc / "splits.json").read_text())["test"][:n_photos]
    photos = [_jpeg(_read(voc / "images" / f"{n}.jpg")) for n in names]
    faces = sorted((data_dir / "facemask-photos" / "with_mask").glob("*.jpg"))[:4]
    faces += sorted((data_dir / "facemask-photos" / "without_mask").glob("*.jpg"))[:4]
    cells = sorted((data_dir / "malaria-nih" / "valid" / "Parasitized").glob("*.png"))[:2]
    cells += sorted((data_dir / "malaria-nih" / "valid" / "Uninfected").glob("*.png"))[:2]
    if not faces or not cells:
        raise SystemExit(f"facemask-photos or malaria-nih missing under {data_dir}")
    p = Payloads(frames=photos)

    def post(path: str, files: Sequence[tuple[str, str, str, bytes]]) -> bytes:
        return http_request(port, path, *multipart(files))

    p.http["single"] = [
        post("/v1/detect", [("file", f"p{i}.jpg", "image/jpeg", j)]) for i, j in enumerate(photos)
    ]
    p.http["batch"] = [
        post(
            "/v1/detect/batch",
            [
                ("files", f"b{i}-{k}.jpg", "image/jpeg", photos[(i + k) % len(photos)])
                for k in range(BATCH_SIZE)
            ],
        )
        for i in range(len(photos))
    ]
    classify = [post("/v1/classify", [("file", f.name, "image/jpeg", _jpeg(_read(f)))]) for f in faces]
    classify += [
        post("/v1/classify?model=malaria", [("file", c.name, "image/png", c.read_bytes())]) for c in cells
    ]
    p.http["classify"] = classify
    p.http["bad"] = [post("/v1/detect", [("file", n, ct, d)]) for n, ct, d in bad_uploads(photos[0])]
    return p


# --- the load client ------------------------------------------------------------------------------


class Client:
    """One connection's worth of traffic: a keep-alive HTTP connection and a WebSocket, both lazy."""

    def __init__(self, port: int, payloads: Payloads, seed: int) -> None:
        self.port = port
        self.payloads = payloads
        self.rng = random.Random(seed)
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.ws: Any = None

    async def close(self) -> None:
        writer, ws = self.writer, self.ws
        self.reader = self.writer = self.ws = None
        if writer is not None:
            writer.close()
        if ws is not None:
            with contextlib.suppress(Exception):  # already broken: nothing more to learn from it
                await ws.close()

    async def _http(self, request: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        self.writer.write(request)
        await self.writer.drain()
        status, body, close = await sl._read_response(self.reader)
        if close:
            self.writer.close()
            self.reader = self.writer = None
        return status, body

    async def _frame(self, frame: bytes) -> str:
        from websockets.asyncio.client import connect

        if self.ws is None:
            self.ws = await connect(
                f"ws://127.0.0.1:{self.port}/v1/stream", max_size=None, open_timeout=TIMEOUT_S
            )
        await self.ws.send(frame)
        while True:
            message = json.loads(await self.ws.recv())
            if message.get("type") == "result":
                return GOOD
            if message.get("type") == "error":
                return "stream_error"

    async def one(self, kind: str, t0: float) -> Sample:
        start = time.perf_counter()
        try:
            if kind == "stream":
                outcome = await asyncio.wait_for(
                    self._frame(self.rng.choice(self.payloads.frames)), TIMEOUT_S
                )
            else:
                request = self.rng.choice(self.payloads.http[kind])
                status, body = await asyncio.wait_for(self._http(request), TIMEOUT_S)
                parsed = json.loads(body) if kind == "batch" and status == 200 else None
                outcome = outcome_of(kind, status, parsed)
        except TimeoutError:
            outcome = "timeout"
            await self.close()
        except ValueError:  # an answer that is not HTTP or not JSON
            outcome = "bad_answer"
            await self.close()
        except Exception:  # reset, refused, closed WebSocket...: the connection failed
            outcome = "connection"
            await self.close()
        end = time.perf_counter()
        return Sample(end - t0, kind, outcome, (end - start) * 1000.0, records_of(kind, outcome))


@dataclass
class PhaseResult:
    samples: list[Sample]
    seconds: float
    late: int = 0
    rss_kb: list[tuple[float, int]] = field(default_factory=list)
    reloads: Counter[str] = field(default_factory=Counter)


async def run_phase(
    port: int,
    payloads: Payloads,
    *,
    concurrency: int,
    seconds: float,
    rate: float | None,
    seed: int,
    pid: int | None = None,
    sample_every: float = 5.0,
    reload_every: float = 0.0,
    models_dir: Path | None = None,
) -> PhaseResult:
    """``concurrency`` clients for ``seconds``: closed loop (``rate=None``) or paced to ``rate`` req/s in all."""
    result = PhaseResult([], seconds)
    t0 = time.perf_counter()
    end = t0 + seconds
    kinds = pick_kinds(MIX, 1_000_000, seed)

    async def client(i: int) -> None:
        c = Client(port, payloads, seed * 1000 + i)
        interval = concurrency / rate if rate else 0.0
        k = 0
        try:
            while True:
                due = t0 + (i / concurrency + k) * interval
                now = time.perf_counter()
                if due >= end or now >= end:
                    break
                if rate and due > now:
                    await asyncio.sleep(due - now)
                elif rate and now - due > interval:
                    result.late += 1
                result.samples.append(await c.one(kinds[(k * concurrency + i) % len(kinds)], t0))
                k += 1
        finally:
            await c.close()

    async def sampler() -> None:
        while pid is not None and time.perf_counter() < end:
            result.rss_kb.append((round(time.perf_counter() - t0, 1), rss_kb(pid)))
            await asyncio.sleep(min(sample_every, max(0.0, end - time.perf_counter())))

    async def reloader() -> None:
        n = 0
        while reload_every > 0 and models_dir is not None:
            await asyncio.sleep(reload_every)
            if time.perf_counter() >= end:
                return
            n += 1
            result.reloads[await reload_once(port, models_dir, corrupt=n % 3 == 0)] += 1

    tasks = [asyncio.create_task(client(i)) for i in range(concurrency)]
    extra = [asyncio.create_task(sampler()), asyncio.create_task(reloader())]
    await asyncio.gather(*tasks)
    for task in extra:
        task.cancel()
    await asyncio.gather(*extra, return_exceptions=True)
    result.seconds = time.perf_counter() - t0
    return result


async def reload_once(port: int, models_dir: Path, *, corrupt: bool) -> str:
    """One ``POST /v1/models/reload``; with ``corrupt`` the face model is first replaced by garbage
    (then put back): the reload must be refused with 409 and the traffic must not notice."""
    target = models_dir / "facemask.onnx"
    saved = models_dir.parent / "facemask.onnx.good"
    if corrupt:
        shutil.copy(target, saved)
        staged = models_dir.parent / "facemask.onnx.corrupt"
        staged.write_bytes(b"\x08\x07not a model" * 100)
        os.replace(staged, target)
    request = f"POST /v1/models/reload HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\n\r\n"
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request.encode())
        await writer.drain()
        status, _, _ = await asyncio.wait_for(sl._read_response(reader), TIMEOUT_S)
    except (OSError, TimeoutError, asyncio.IncompleteReadError):
        status = 0
    finally:
        writer.close()
        if corrupt:
            os.replace(saved, target)
    if status == 200 and not corrupt:
        return "ok"
    if status == 409 and corrupt:
        return "refused_as_expected"
    return f"unexpected_{status}{'_corrupt' if corrupt else ''}"


# --- the server -----------------------------------------------------------------------------------


def rss_kb(pid: int) -> int:
    """Resident set size of ``pid`` in kB (``/proc/<pid>/status``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS in /proc/{pid}/status")


def store_count(db: Path) -> int | None:
    """Records in the prediction store's ``requests`` table (``None`` when the file is missing)."""
    if not db.is_file():
        return None
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM requests").fetchone()[0])


def _phase_line(name: str, s: dict[str, Any]) -> str:
    return (
        f"{name}: {s['requests']} requests, {s['req_s']} req/s, good {s['good']}, bad refused "
        f"{s['rejected_bad']}, errors {s['errors'] or 0}, p50 {s['p50_ms']} ms, p99 {s['p99_ms']} ms"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=10.0, help="soak duration")
    p.add_argument("--concurrency", type=int, default=8, help="clients (connections)")
    p.add_argument("--load", type=float, default=0.8, help="soak rate as a share of the measured capacity")
    p.add_argument("--window-seconds", type=float, default=60.0, help="reporting window (p99 first vs last)")
    p.add_argument("--warmup-seconds", type=float, default=15.0, help="closed-loop warm-up, not measured")
    p.add_argument("--capacity-seconds", type=float, default=30.0, help="closed-loop capacity measurement")
    p.add_argument(
        "--hot-swap", type=float, default=0.0, metavar="SECONDS", help="reload every SECONDS (0: off)"
    )
    p.add_argument("--p99-ratio", type=float, default=1.5, help="allowed p99 last window / first window")
    p.add_argument(
        "--idle-seconds",
        type=float,
        default=20.0,
        help="quiet seconds before each of the two RSS points (after warm-up and after the run); more "
        "than the server's MASKOPS_IDLE_TRIM_S (10 s) plus half of it",
    )
    p.add_argument("--rss-tolerance", type=float, default=0.10, help="allowed RSS growth after warm-up")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--models-dir", type=Path, default=ROOT / "models")
    p.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("MASKOPS_DATA_DIR", ROOT.parent / "shared" / "datasets")),
    )
    p.add_argument("--json", type=Path, default=None, help="write the summary here")
    args = p.parse_args()
    if not (args.models_dir / "facemask.onnx").is_file():
        raise SystemExit(f"no facemask.onnx in {args.models_dir}: ship a model first")

    work = Path(tempfile.mkdtemp(prefix="maskops-bench-soak-"))
    models_dir = args.models_dir
    if args.hot_swap > 0:  # reloads rewrite files: never in the shipped folder
        models_dir = Path(shutil.copytree(args.models_dir, work / "models"))
    for key in [k for k in os.environ if k.startswith("MASKOPS_")]:
        del os.environ[key]
    os.environ.update(
        MASKOPS_WORK_DIR=str(work / "work"), MASKOPS_LOG_FORMAT="json", MASKOPS_LOG_LEVEL="WARNING"
    )
    load_before = os.getloadavg()
    port = sl.free_port()
    log = work / "server.log"
    payloads = build_payloads(port, args.data_dir)
    proc = sl.start_server("maskops", port, models_dir, log)
    phases: dict[str, PhaseResult] = {}
    try:
        print(f"server pid {proc.pid} on port {port}; work dir {work}", flush=True)
        c = args.concurrency
        phases["warmup"] = asyncio.run(
            run_phase(port, payloads, concurrency=c, seconds=args.warmup_seconds, rate=None, seed=args.seed)
        )
        cap = asyncio.run(
            run_phase(
                port, payloads, concurrency=c, seconds=args.capacity_seconds, rate=None, seed=args.seed + 1
            )
        )
        phases["capacity"] = cap
        capacity = len(cap.samples) / cap.seconds
        print(_phase_line("capacity", summarise(cap.samples, cap.seconds)), flush=True)
        time.sleep(args.idle_seconds)  # both RSS points idle: the server trims its heap when idle
        rss_warm = rss_kb(proc.pid)
        rate = args.load * capacity
        print(
            f"soak: {args.minutes:g} min at {rate:.1f} req/s ({args.load:.0%} of {capacity:.1f}); RSS {rss_warm} kB",
            flush=True,
        )
        soak = asyncio.run(
            run_phase(
                port,
                payloads,
                concurrency=c,
                seconds=args.minutes * 60.0,
                rate=rate,
                seed=args.seed + 2,
                pid=proc.pid,
                sample_every=min(5.0, args.window_seconds),
                reload_every=args.hot_swap,
                models_dir=models_dir if args.hot_swap > 0 else None,
            )
        )
        phases["soak"] = soak
        time.sleep(args.idle_seconds)
        rss_end = rss_kb(proc.pid)
    finally:
        sl.stop_server(proc)
    exit_code = proc.returncode
    tracebacks = log.read_text(errors="replace").count("Traceback")
    expected = sum(s.records for ph in phases.values() for s in ph.samples)
    count = store_count(work / "work" / "maskops.db")

    rows = windows(soak.samples, args.window_seconds, args.minutes * 60.0)  # the last request may end late
    for row in rows:
        ends = [kb for t, kb in soak.rss_kb if row["start_s"] <= t < row["start_s"] + args.window_seconds]
        row["rss_kb"] = ends[-1] if ends else None
    total = summarise(soak.samples, soak.seconds)
    checks = criteria(
        total,
        rows,
        rss_warm,
        rss_end,
        expected,
        count,
        rss_tolerance=args.rss_tolerance,
        p99_ratio=args.p99_ratio,
        reloads=dict(soak.reloads) if args.hot_swap > 0 else None,
    )
    result = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join([".venv/bin/python", "bench/soak.py", *sys.argv[1:]]),
        "cpus": os.cpu_count(),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "mix": MIX,
        "batch_size": BATCH_SIZE,
        "concurrency": args.concurrency,
        "capacity_req_s": round(capacity, 2),
        "capacity": summarise(cap.samples, cap.seconds),
        "target_req_s": round(rate, 2),
        "soak_seconds": round(soak.seconds, 1),
        "late_requests": soak.late,
        "soak": total,
        "windows": rows,
        "rss_kb": {
            "after_warmup": rss_warm,
            "end": rss_end,
            # under load, end of the first window to end of the last: drift, without the step that
            # the first seconds of load add to an idle process
            "drift_first_to_last_window": rss_drift(rows),
            "samples": soak.rss_kb,
        },
        "store": {"expected": expected, "count": count},
        "reloads": dict(soak.reloads),
        "server_exit_code": exit_code,
        "server_log_tracebacks": tracebacks,
        "criteria": checks,
        "pass": all(v["pass"] for v in checks.values()),
    }
    print(_phase_line("soak", total) + f"; {soak.late} requests sent late (behind schedule)")
    print("| window | start s | requests | req/s | errors | p50 ms | p99 ms | RSS kB |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['window']} | {r['start_s']} | {r['requests']} | {r['req_s']} | {sum(r['errors'].values())} | "
            f"{r['p50_ms']} | {r['p99_ms']} | {r['rss_kb']} |"
        )
    for name, check in checks.items():
        print(f"{'PASS' if check['pass'] else 'FAIL'} {name}: {check['value']} (target {check['target']})")
    print(f"RSS drift under load, first to last window: {result['rss_kb']['drift_first_to_last_window']}")
    print(f"server exit code {exit_code}, tracebacks in its log: {tracebacks}; log: {log}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))
    sys.exit(0 if result["pass"] else 1)


if __name__ == "__main__":
    main()
