"""Faults under load: ``maskops serve`` (a uvicorn subprocess on loopback, the shipped models) driven
at concurrency 8 with real photos while one fault is injected.

    .venv/bin/python bench/faults.py                                   # every fault
    .venv/bin/python bench/faults.py --faults db,sigterm --json work/bench/faults.json

Faults (``--faults``, comma-separated):

``db``        the PostgreSQL store stopped for ``--down`` seconds and started again (a throwaway
              cluster, ``tests/monitor/pgcluster.py``). Expected: every request succeeds, records are
              spooled and replayed, the store holds every answered request exactly once, ``/ready``
              stays 200 (``prediction_store: spooling`` while the database is down).
``disk``      the same outage with the spool on a full disk: a ``--spool-size`` tmpfs mounted on the
              spool folder (``mount -t tmpfs``; as root), or, when mounting is not permitted, a file size
              limit (``RLIMIT_FSIZE``) on the server process. Expected: serving goes on, ``/ready`` says
              ``degraded`` with the reason, the error is logged, ``maskops_store_records_dropped``
              counts what the spool could not take, and store + dropped = answered.
``model``     ``facemask.onnx`` and its card deleted from the models folder during load, then
              ``POST /v1/models/reload``. Expected: serving goes on from the loaded session, ``/ready``
              says the file is gone, the reload is refused with a clear error.
``detector``  the same with the YuNet weights.
``sigterm``   SIGTERM during load. Expected: requests in flight finish (200), no new connection is
              accepted, the process exits 0 within uvicorn's graceful timeout, every answered request
              is in the store once.
``kill``      ``kill -9`` during load, then a restart on the same work dir. Expected: no duplicates;
              the loss is bounded by the writer's in-memory queue (the ``maskops_store_queue`` gauge
              read just before the kill is given beside it).

Every request carries its own ``X-Request-ID`` so the store can be checked exactly once. The photos
are ``--photos`` images of ``facemask-voc`` (the test split's first ones) resized to 640x480, sent
in turn. ``/ready`` is polled every 0.5 s throughout; the table gives its states during the fault and
after it. Helpers come from ``bench/serve_load.py`` (server, client) and ``bench/monitor_store.py``
(PostgreSQL, store reads).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import monitor_store as ms  # noqa: E402
import serve_load as sl  # noqa: E402

FAULTS = ("db", "disk", "model", "detector", "sigterm", "kill")


# ---- load


@dataclass
class Shot:
    """One request: when it was sent and answered (seconds from the start) and how it ended."""

    rid: str
    sent: float
    done: float
    outcome: str  # the HTTP status, or the client exception's name


@dataclass
class Run:
    """The clock, the requests, the fault's events and the ``/ready`` probes of one fault."""

    t0: float = field(default_factory=time.perf_counter)
    shots: list[Shot] = field(default_factory=list)
    events: dict[str, float] = field(default_factory=dict)
    ready: list[tuple[float, str]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def now(self) -> float:
        return time.perf_counter() - self.t0

    def mark(self, event: str) -> None:
        self.events[event] = round(self.now(), 2)
        print(f"  {self.events[event]:6.1f} s  {event}", flush=True)


def photos(data_dir: Path, n: int) -> list[bytes]:
    """The first ``n`` test photos of facemask-voc as 640x480 JPEGs (``serve_load.payload``)."""
    split = json.loads((data_dir / "facemask-voc" / "splits.json").read_text(encoding="utf-8"))
    names = [Path(str(x)).stem + ".jpg" for x in split["test"][:n]]
    return [sl.payload(data_dir, name) for name in names]


async def drive(
    port: int, jpegs: list[bytes], run: Run, concurrency: int, seconds: float, prefix: str
) -> None:
    """Closed-loop load: ``concurrency`` keep-alive connections until ``seconds`` or ``run.stop``."""
    counter = iter(range(10**9))
    end = run.t0 + seconds

    def running() -> bool:
        return time.perf_counter() < end and not run.stop.is_set()

    def answered(rid: str, outcome: str, sent: float, done: float) -> None:
        run.shots.append(Shot(rid, sent - run.t0, done - run.t0, outcome))

    def request_of(w: int) -> Callable[[], tuple[str, bytes]]:
        def request() -> tuple[str, bytes]:
            i = next(counter)
            rid = f"{prefix}-{w}-{i}"
            return rid, ms._request(port, jpegs[i % len(jpegs)], rid)

        return request

    await asyncio.gather(
        *(sl.keepalive_client(port, request_of(w), running, answered) for w in range(concurrency))
    )


def ready_state(port: int) -> str:
    """``/ready`` in one line: HTTP status, status field and every check that is not ``ok``."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=5) as r:
            code, body = r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        code, body = exc.code, json.loads(exc.read() or b"{}")
    except OSError as exc:
        return f"no answer ({type(exc).__name__})"
    checks = body.get("checks") or body.get("error", {}).get("details", {}).get("checks", {})
    status = body.get("status") or body.get("error", {}).get("code", "?")
    bad = [f"{k}: {v}" for k, v in checks.items() if v not in ("ok", "off")]
    return f"{code} {status}" + (f" ({'; '.join(bad)})" if bad else "")


def probe_ready(port: int, run: Run) -> threading.Thread:
    def loop() -> None:
        while not run.stop.is_set():
            run.ready.append((round(run.now(), 1), ready_state(port)))
            run.stop.wait(0.5)

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    return t


def states(run: Run, start: float, end: float) -> list[str]:
    """The distinct ``/ready`` states seen between ``start`` and ``end``, in order, with their times."""
    out: list[list[Any]] = []
    for t, s in run.ready:
        if start <= t <= end:
            if out and out[-1][0] == s:
                out[-1][2] = t
            else:
                out.append([s, t, t])
    return [f"{s} [{a:g}-{b:g} s]" for s, a, b in out]


def metrics(port: int) -> dict[str, float]:
    """The store's counters and queue gauge from ``/metrics`` (empty when the server does not answer)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            text = r.read().decode()
    except OSError:
        return {}
    out = {}
    for line in text.splitlines():
        if line.startswith(("maskops_store_records_", "maskops_store_queue", "maskops_store_degraded")):
            name, value = line.rsplit(" ", 1)
            if not name.endswith("_created"):
                out[name] = float(value)
    return out


# ---- server


def serve(port: int, env: dict[str, str], models_dir: Path, log: Path, limit_bytes: int | None = None):  # type: ignore[no-untyped-def]
    """``maskops serve`` with ``env`` added; ``limit_bytes`` caps the size of every file it writes."""
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        if limit_bytes is None:
            return sl.start_server("maskops", port, models_dir, log)

        # RLIMIT_FSIZE: a write past the limit fails with EFBIG (SIGXFSZ ignored) instead of killing
        def limit() -> None:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

        cmd = [sys.executable, "-m", "maskops.cli", "serve", "--port", str(port)]
        proc = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env={**os.environ, "MASKOPS_MODELS_DIR": str(models_dir)},
            stdout=subprocess.PIPE,  # the log is not a file: the limit would cut it
            stderr=subprocess.STDOUT,
            preexec_fn=limit,
        )
        threading.Thread(target=_copy, args=(proc, log), daemon=True).start()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if proc.poll() is None and ready_state(port).startswith("200"):
                return proc
            time.sleep(0.3)
        proc.kill()
        raise SystemExit(f"server not ready after 120 s; see {log}")
    finally:
        os.environ.clear()
        os.environ.update(saved)


def _copy(proc: subprocess.Popen[bytes], log: Path) -> None:
    assert proc.stdout is not None
    with log.open("wb") as fh:
        for line in proc.stdout:
            fh.write(line)
            fh.flush()


def warm(port: int, jpegs: list[bytes]) -> None:
    asyncio.run(sl.warm_up(port, sl.build_request(port, "/v1/detect", jpegs[0]), 10))


def wait_stored(url: str, answered: set[str], timeout: float = 90.0) -> list[str]:
    """The store's request ids once it holds every answered one (or after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            stored = ms._stored_ids(url)
        except Exception as exc:  # the database still coming back
            print(f"  store not readable yet: {str(exc).splitlines()[0]}", flush=True)
            stored = []
        if answered <= set(stored) or time.monotonic() > deadline:
            return stored
        time.sleep(1)


# ---- summary


def summary(run: Run, stored: list[str] | None, *, good_before: float | None = None) -> dict[str, Any]:
    """Requests and store figures of a run. ``good_before``: only requests sent before that time are
    good ones (after a SIGTERM or a kill, new connections are meant to fail)."""
    good = [s for s in run.shots if good_before is None or s.sent < good_before]
    answered = {s.rid for s in run.shots if s.outcome == "200"}
    outcomes: dict[str, int] = {}
    for s in run.shots:
        outcomes[s.outcome] = outcomes.get(s.outcome, 0) + 1
    out: dict[str, Any] = {
        "seconds": round(max((s.done for s in run.shots), default=0.0), 1),
        "requests": len(run.shots),
        "answered_200": len(answered),
        "failed_good": sum(1 for s in good if s.outcome != "200"),
        "server_5xx": sum(1 for s in run.shots if s.outcome.isdigit() and s.outcome.startswith("5")),
        "outcomes": outcomes,
        "events": run.events,
    }
    if stored is not None:
        prefix = run.shots[0].rid.split("-")[0] + "-" if run.shots else ""
        stored = [i for i in stored if i.startswith(prefix)]  # not the warm-up requests
        ids = set(stored)
        out.update(
            stored=len(stored),
            stored_distinct=len(ids),
            duplicates=len(stored) - len(ids),
            missing=len(answered - ids),
            extra=len(ids - answered),
        )
    return out


# ---- faults


def fault_db(
    args: argparse.Namespace, jpegs: list[bytes], work: Path, spool_full: bool = False
) -> dict[str, Any]:
    cluster = ms._pg(args)
    mounted: Path | None = None
    how = f"PostgreSQL stopped at {args.down_at:g} s for {args.down:g} s"
    try:
        url = cluster.create_database("faults")
        env = {"MASKOPS_WORK_DIR": str(work), "MASKOPS_DATABASE_URL": url}
        limit = None
        if spool_full:
            spool = work / "monitor" / "spool"
            spool.mkdir(parents=True)
            size = args.spool_size
            r = subprocess.run(
                ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(spool)],
                capture_output=True,
                text=True,
            )
            if r.returncode == 0:
                mounted = spool
                how += f"; spool on a {size} tmpfs (mount -t tmpfs -o size={size})"
            else:
                limit = _bytes(size)
                env["MASKOPS_LOG_LEVEL"] = "WARNING"
                how += f"; mount refused ({r.stderr.strip()}): RLIMIT_FSIZE {size} on the server"
        port = sl.free_port()
        proc = serve(port, env, ROOT / "models", work / "serve.log", limit)
        try:
            warm(port, jpegs)
            run = Run()
            probe = probe_ready(port, run)

            def outage() -> None:
                time.sleep(args.down_at)
                cluster.stop()
                run.mark("database stopped")
                time.sleep(args.down)
                run.metrics_down = metrics(port)  # type: ignore[attr-defined]
                cluster.start()
                run.mark("database started")

            t = threading.Thread(target=outage)
            t.start()
            asyncio.run(drive(port, jpegs, run, 8, args.seconds, "db"))
            t.join()
            answered = {s.rid for s in run.shots if s.outcome == "200"}
            counters = metrics(port)
            dropped = int(counters.get("maskops_store_records_dropped_total", 0))
            stored = wait_stored(url, answered, timeout=30 if spool_full else 90)
            time.sleep(1.5)
            run.mark("store checked")
            counters = metrics(port)
            run.stop.set()
            probe.join()
            after = ready_state(port)
        finally:
            sl.stop_server(proc)
    finally:
        cluster.remove()
        if mounted is not None:
            subprocess.run(["umount", str(mounted)], check=False)
    out = summary(run, stored)
    down, up = run.events["database stopped"], run.events["database started"]
    out.update(
        how=how,
        ready_before=states(run, 0, down),
        ready_during=states(run, down, up + 5),
        ready_after=after,
        counters=counters,
        counters_at_restart=getattr(run, "metrics_down", {}),
    )
    if spool_full:
        dropped = int(counters.get("maskops_store_records_dropped_total", 0))
        out["dropped"] = dropped
        out["stored_plus_dropped"] = out["stored_distinct"] + dropped
        out["error_logged"] = "prediction store degraded" in (work / "serve.log").read_text(errors="replace")
    return out


def _bytes(size: str) -> int:
    units = {"k": 1024, "m": 1024**2, "g": 1024**3}
    return int(size[:-1]) * units[size[-1].lower()] if size[-1].lower() in units else int(size)


def fault_files(args: argparse.Namespace, jpegs: list[bytes], work: Path, what: str) -> dict[str, Any]:
    models = work / "models"
    models.mkdir(parents=True)
    for name in ("facemask.onnx", "facemask.json"):
        shutil.copy(ROOT / "models" / name, models / name)
    yunet_src = Path(
        os.environ.get("MASKOPS_YUNET_PATH")
        or ROOT.parent / "shared" / "models" / "face_detection_yunet_2026may.onnx"
    )
    yunet = work / yunet_src.name
    shutil.copy(yunet_src, yunet)
    gone = [models / "facemask.onnx", models / "facemask.json"] if what == "model" else [yunet]
    url = f"sqlite:///{work / 'maskops.db'}"
    env = {"MASKOPS_WORK_DIR": str(work), "MASKOPS_YUNET_PATH": str(yunet)}
    port = sl.free_port()
    proc = serve(port, env, models, work / "serve.log")
    reload: dict[str, Any] = {}
    try:
        warm(port, jpegs)
        run = Run()
        probe = probe_ready(port, run)

        def inject() -> None:
            time.sleep(args.delete_at)
            for p in gone:
                p.unlink()
            run.mark(f"deleted {', '.join(p.name for p in gone)}")
            time.sleep(args.reload_after)
            run.mark("POST /v1/models/reload")
            req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/models/reload", method="POST")
            try:
                with urllib.request.urlopen(req, timeout=60) as r:
                    reload.update(status=r.status, body=json.loads(r.read()))
            except urllib.error.HTTPError as exc:
                reload.update(status=exc.code, body=json.loads(exc.read() or b"{}"))
            run.mark(f"reload answered {reload['status']}")

        t = threading.Thread(target=inject)
        t.start()
        asyncio.run(drive(port, jpegs, run, 8, args.seconds, what))
        t.join()
        answered = {s.rid for s in run.shots if s.outcome == "200"}
        stored = wait_stored(url, answered, timeout=30)
        run.stop.set()
        probe.join()
        after = ready_state(port)
    finally:
        sl.stop_server(proc)
    out = summary(run, stored)
    deleted = next(v for k, v in run.events.items() if k.startswith("deleted"))
    reloaded = next(v for k, v in run.events.items() if k.startswith("reload answered"))
    after_reload = [s for s in run.shots if s.sent > reloaded]
    body = reload.get("body", {})
    out.update(
        how=f"deleted {', '.join(p.name for p in gone)} at {args.delete_at:g} s, reload {args.reload_after:g} s later",
        ready_before=states(run, 0, deleted),
        ready_during=states(run, deleted, run.now()),
        ready_after=after,
        reload_status=reload.get("status"),
        reload_error=body.get("error", {}).get("message") if "error" in body else None,
        reload_body=body,
        answered_after_reload=sum(1 for s in after_reload if s.outcome == "200"),
        failed_after_reload=sum(1 for s in after_reload if s.outcome != "200"),
    )
    return out


def fault_sigterm(args: argparse.Namespace, jpegs: list[bytes], work: Path) -> dict[str, Any]:
    url = f"sqlite:///{work / 'maskops.db'}"
    port = sl.free_port()
    proc = serve(port, {"MASKOPS_WORK_DIR": str(work)}, ROOT / "models", work / "serve.log")
    warm(port, jpegs)
    run = Run()
    probe = probe_ready(port, run)
    result: dict[str, Any] = {}

    def terminate() -> None:
        time.sleep(args.signal_at)
        proc.send_signal(signal.SIGTERM)
        run.mark("SIGTERM")
        t = time.perf_counter()
        try:
            result["exit_code"] = proc.wait(args.grace + 30)
        except subprocess.TimeoutExpired:
            result["exit_code"] = "still running: killed"
            proc.kill()
            proc.wait()
        result["exit_s"] = round(time.perf_counter() - t, 2)
        run.mark(f"exited {result['exit_code']}")
        time.sleep(1.0)  # the load keeps trying to connect for a second
        run.stop.set()

    t = threading.Thread(target=terminate)
    t.start()
    asyncio.run(drive(port, jpegs, run, 8, args.seconds + args.grace + 30, "term"))
    t.join()
    probe.join()
    answered = {s.rid for s in run.shots if s.outcome == "200"}
    stored = ms._stored_ids(url)
    sig = run.events["SIGTERM"]
    in_flight = [s for s in run.shots if s.sent < sig < s.done]
    later = [s for s in run.shots if s.sent >= sig]
    out = summary(run, stored, good_before=sig)
    late_ok = [s for s in later if s.outcome == "200"]
    out.update(
        how=f"SIGTERM at {args.signal_at:g} s",
        **result,
        graceful_timeout_s=_graceful_timeout(),
        in_flight_at_signal=len(in_flight),
        in_flight_outcomes=_count(in_flight),
        sent_after_signal=len(later),
        after_signal_outcomes=_count(later),
        answered_after_signal=len(late_ok),
        latest_answered_send_after_signal_ms=round(max((s.sent - sig for s in late_ok), default=0) * 1000, 1),
        ready_during=states(run, sig, run.now()),
        store_missing_of_answered=len(answered - set(stored)),
    )
    return out


def _graceful_timeout() -> int | None:
    """What ``maskops serve`` gives uvicorn as ``timeout_graceful_shutdown`` (None: no limit)."""
    try:
        from maskops.commands.serve import uvicorn_options  # type: ignore[attr-defined]
        from maskops.serve.settings import ServeSettings

        return uvicorn_options(ServeSettings()).get("timeout_graceful_shutdown")  # type: ignore[no-any-return]
    except ImportError:
        return None


def _count(shots: list[Shot]) -> dict[str, int]:
    out: dict[str, int] = {}
    for s in shots:
        out[s.outcome] = out.get(s.outcome, 0) + 1
    return out


def fault_kill(args: argparse.Namespace, jpegs: list[bytes], work: Path) -> dict[str, Any]:
    url = f"sqlite:///{work / 'maskops.db'}"
    env = {"MASKOPS_WORK_DIR": str(work)}
    port = sl.free_port()
    proc = serve(port, env, ROOT / "models", work / "serve-1.log")
    warm(port, jpegs)
    run = Run()
    probe = probe_ready(port, run)
    before: dict[str, float] = {}

    def kill() -> None:
        time.sleep(args.signal_at)
        before.update(metrics(port))
        proc.send_signal(signal.SIGKILL)
        run.mark("kill -9")
        proc.wait()
        time.sleep(1.0)
        run.stop.set()

    t = threading.Thread(target=kill)
    t.start()
    asyncio.run(drive(port, jpegs, run, 8, args.seconds + 30, "kill"))
    t.join()
    probe.join()
    answered = {s.rid for s in run.shots if s.outcome == "200"}
    stored_before = set(ms._stored_ids(url))
    spool = work / "monitor" / "spool" / "spool.jsonl"
    spooled_bytes = spool.stat().st_size if spool.exists() else 0
    t_restart = time.perf_counter()
    proc = serve(port, env, ROOT / "models", work / "serve-2.log")  # replays the spool, if any
    restart_s = time.perf_counter() - t_restart
    try:
        time.sleep(3)
        after_restart = ready_state(port)
        stored = ms._stored_ids(url)
    finally:
        sl.stop_server(proc)
    out = summary(run, stored, good_before=run.events["kill -9"])
    kill_t = run.events["kill -9"]
    out.update(
        how=f"kill -9 at {args.signal_at:g} s, restart on the same work dir",
        cut_by_kill=sum(1 for s in run.shots if s.sent < kill_t and s.outcome != "200"),
        stored_before_restart=len(stored_before & answered),
        spool_bytes_left=spooled_bytes,
        lost=len(answered - set(stored)),
        queue_gauge_before_kill=before.get("maskops_store_queue"),
        logged_before_kill=before.get("maskops_store_records_logged_total"),
        restart_ready_s=round(restart_s, 1),
        ready_after=after_restart,
    )
    return out


# ---- main


def row(name: str, r: dict[str, Any]) -> str:
    during = "; ".join(r.get("ready_during", [])) or "-"
    store = (
        f"{r.get('stored_distinct', '-')} of {r['answered_200']} answered, dup {r.get('duplicates', '-')}, "
        f"missing {r.get('missing', '-')}"
    )
    extra = {
        "db": lambda: (
            f"spooled {r['counters'].get('maskops_store_records_spooled_total', 0):g}, replayed {r['counters'].get('maskops_store_records_replayed_total', 0):g}"
        ),
        "disk": lambda: (
            f"dropped {r['dropped']} (stored+dropped {r['stored_plus_dropped']}), error logged {r['error_logged']}"
        ),
        "model": lambda: (
            f"reload {r['reload_status']}: {r['reload_error']}; after it {r['answered_after_reload']} ok / {r['failed_after_reload']} failed"
        ),
        "detector": lambda: (
            f"reload {r['reload_status']}: {r['reload_error']}; after it {r['answered_after_reload']} ok / {r['failed_after_reload']} failed"
        ),
        "sigterm": lambda: (
            f"exit {r['exit_code']} in {r['exit_s']} s (graceful timeout {r['graceful_timeout_s']}); in flight {r['in_flight_at_signal']} {r['in_flight_outcomes']}; after signal {r['after_signal_outcomes']}"
        ),
        "kill": lambda: (
            f"lost {r['lost']} (queue gauge before kill {r['queue_gauge_before_kill']}); cut by kill {r['cut_by_kill']}; restart ready in {r['restart_ready_s']} s"
        ),
    }[name]()
    cells = [
        name,
        str(r["answered_200"]),
        str(r["failed_good"]),
        str(r["server_5xx"]),
        during,
        r.get("ready_after", "-"),
        store,
        extra,
    ]
    return "| " + " | ".join(c.replace("|", "/") for c in cells) + " |"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--faults", default=",".join(FAULTS), help=f"comma-separated: {', '.join(FAULTS)}")
    p.add_argument("--seconds", type=float, default=40.0, help="load per fault (db, disk, model, detector)")
    p.add_argument("--down-at", type=float, default=10.0, help="db/disk: database stopped at")
    p.add_argument("--down", type=float, default=15.0, help="db/disk: seconds down")
    p.add_argument("--spool-size", default="64k", help="disk: size of the spool's file system")
    p.add_argument("--delete-at", type=float, default=10.0, help="model/detector: files deleted at")
    p.add_argument("--reload-after", type=float, default=10.0, help="model/detector: reload this much later")
    p.add_argument("--signal-at", type=float, default=10.0, help="sigterm/kill: signal at")
    p.add_argument("--grace", type=float, default=30.0, help="sigterm: seconds to wait for the exit")
    p.add_argument("--photos", type=int, default=16)
    p.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("MASKOPS_DATA_DIR", ROOT.parent / "shared" / "datasets")),
    )
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args()
    chosen = [f.strip() for f in args.faults.split(",") if f.strip()]
    unknown = sorted(set(chosen) - set(FAULTS))
    if unknown:
        p.error(f"unknown fault(s) {', '.join(unknown)}; valid: {', '.join(FAULTS)}")
    jpegs = photos(args.data_dir, args.photos)
    print(f"{len(jpegs)} photos of facemask-voc test at 640x480; concurrency 8; {ms.machine()}", flush=True)
    results: dict[str, Any] = {}
    for name in chosen:
        work = Path(tempfile.mkdtemp(prefix=f"maskops-fault-{name}-"))
        print(f"{name}: work dir {work}", flush=True)
        if name in ("db", "disk"):
            results[name] = fault_db(args, jpegs, work, spool_full=name == "disk")
        elif name in ("model", "detector"):
            results[name] = fault_files(args, jpegs, work, name)
        elif name == "sigterm":
            results[name] = fault_sigterm(args, jpegs, work)
        else:
            results[name] = fault_kill(args, jpegs, work)
        results[name]["work_dir"] = str(work)
        print(
            json.dumps({k: v for k, v in results[name].items() if k != "reload_body"}, indent=2), flush=True
        )
    print()
    print(
        "| fault | answered | failed good | 5xx | /ready during | /ready after | store (exactly once) | fault figures |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        print(row(name, r))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        doc = {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": ms.machine(),
            "faults": results,
        }
        args.json.write_text(json.dumps(doc, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
