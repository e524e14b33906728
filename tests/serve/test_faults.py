"""Faults the service must ride out (``bench/faults.py`` measures them under load): a spool disk that
fills in the middle of an append, model and detector files deleted while serving, SIGTERM with a
request in flight.

The database outage and ``kill -9`` of the writer are tested in ``tests/monitor/test_writer.py``,
``/ready`` while records spool in ``tests/monitor/test_serve_store.py``, reloads of bad files in
``tests/serve/test_hot_swap.py``.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from serve_helpers import assert_error
from sqlalchemy import create_engine, select

from maskops.monitor import spool as spool_module
from maskops.monitor.db import open_store
from maskops.monitor.schema import RequestRow
from maskops.monitor.spool import Spool
from maskops.monitor.writer import StoreWriter

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "monitor"))
from monitor_helpers import make_record

REAL_WRITE = os.write


@pytest.fixture
def disk_of(monkeypatch: pytest.MonkeyPatch) -> Callable[[Path, int], list[int]]:
    """``disk_of(path, free)``: writes to ``path`` find ``free`` bytes of room, then ENOSPC (a write
    that crosses the limit is cut there, as on a full file system). Returns the room left, settable."""

    def install(path: Path, free: int) -> list[int]:
        room = [free]

        def write(fd: int, data: bytes | memoryview) -> int:
            try:
                target = os.readlink(f"/proc/self/fd/{fd}")
            except OSError:
                target = ""
            if target != os.path.realpath(path):
                return REAL_WRITE(fd, data)
            if room[0] <= 0:
                raise OSError(errno.ENOSPC, "No space left on device")
            n = REAL_WRITE(fd, bytes(data)[: room[0]])
            room[0] -= n
            return n

        monkeypatch.setattr(spool_module.os, "write", write)
        return room

    return install


def test_a_spool_append_cut_by_a_full_disk_leaves_nothing(
    tmp_path: Path, disk_of: Callable[[Path, int], list[int]], caplog: pytest.LogCaptureFixture
) -> None:
    spool = Spool(tmp_path / "spool")
    spool.append([make_record("a0"), make_record("a1")])
    size = spool.path.stat().st_size
    room = disk_of(spool.path, 300)  # part of the next batch fits
    with pytest.raises(OSError):
        spool.append([make_record(f"b{i}") for i in range(4)])
    assert spool.path.stat().st_size == size  # cut back: no half batch, no cut line
    room[0] = 10**9  # room again
    spool.append([make_record("c0")])
    got: list[str] = []
    assert spool.replay(lambda records: got.extend(r.request_id for r in records)) == 3
    assert got == ["a0", "a1", "c0"]
    assert "skipping" not in caplog.text


def test_the_replay_goes_on_when_the_full_disk_cannot_take_its_offset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The replay empties the spool (freeing the disk) even when ``spool.offset`` cannot be saved;
    before, it wrote its first chunk again and again and every new record was dropped."""
    spool = Spool(tmp_path / "spool")
    spool.append([make_record(f"s{i}") for i in range(5)])

    def full(offset: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(spool, "_save_offset", full)
    got: list[str] = []
    assert spool.replay(lambda records: got.extend(r.request_id for r in records), chunk=2) == 5
    assert got == [f"s{i}" for i in range(5)]
    assert not spool.path.exists() and not spool
    assert caplog.text.count("cannot be saved") == 1


def test_dropped_records_are_counted_exactly_when_the_spool_disk_fills(
    tmp_path: Path, disk_of: Callable[[Path, int], list[int]]
) -> None:
    """Database down, the spool's disk fills mid-batch: every record is either stored once after the
    replay or counted as dropped, never both."""
    db_dir = tmp_path / "db"
    url = f"sqlite:///{db_dir / 'm.db'}"
    writer = StoreWriter(
        create_engine(url), tmp_path / "spool", batch_size=4, flush_interval=0.01, retry_interval=0.05
    )
    room = disk_of(writer.spool.path, 4000)  # room for a few records (~1 kB each)
    sent = [f"r{i:02d}" for i in range(24)]
    try:
        writer.start()
        for rid in sent:
            writer.submit(make_record(rid))
            time.sleep(0.005)
        c = writer.counters
        deadline = time.monotonic() + 10
        while c.spooled._value.get() + c.dropped._value.get() < len(sent) and time.monotonic() < deadline:
            time.sleep(0.02)
        dropped = int(c.dropped._value.get())
        assert 0 < dropped < len(sent)
        assert writer.status().degraded is not None
        room[0] = 10**9
        db_dir.mkdir()
        open_store(url).dispose()  # the database is back
        assert writer.flush(10), writer.status()
    finally:
        writer.stop()
    with create_engine(url).connect() as conn:
        stored = list(conn.scalars(select(RequestRow.request_id)))
    assert len(stored) == len(set(stored))
    assert len(stored) + dropped == len(sent)
    assert int(writer.counters.replayed._value.get()) == len(stored)


def test_a_full_spool_disk_shows_on_ready_and_metrics_and_serving_goes_on(
    make_client: Callable[..., TestClient], face_photo: bytes
) -> None:
    if not os.path.exists("/dev/full"):
        pytest.skip("/dev/full is missing")
    port = _free_port()  # nothing listens there: the database is unreachable
    client = make_client(database_url=f"postgresql+psycopg://maskops@127.0.0.1:{port}/maskops")
    store = client.app.state.prediction_store
    store.writer.spool.path = Path("/dev/full")  # every spool write: ENOSPC
    for _ in range(3):
        r = client.post("/v1/detect", files={"file": ("p.jpg", face_photo, "image/jpeg")})
        assert r.status_code == 200, r.text
    deadline = time.monotonic() + 10
    while store.writer.counters.dropped._value.get() < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    ready = client.get("/ready")
    assert ready.status_code == 200
    assert ready.json()["status"] == "degraded"
    assert "No space left on device" in ready.json()["checks"]["prediction_store"]
    assert "/dev/" not in ready.text  # the spool file's name, not its path
    assert "maskops_store_records_dropped_total 3.0" in client.get("/metrics").text
    assert client.post("/v1/detect", files={"file": ("p.jpg", face_photo, "image/jpeg")}).status_code == 200


def test_a_deleted_model_file_keeps_serving_and_ready_says_so(
    client: TestClient, models_dir: Path, face_photo: bytes, tmp_path: Path
) -> None:
    (models_dir / "facemask.onnx").unlink()
    r = client.get("/ready")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "degraded"
    assert "facemask.onnx" in body["checks"]["model_files"]
    assert "facemask.json" not in body["checks"]["model_files"]  # the card is still there
    assert str(tmp_path) not in r.text  # names only, never server paths
    assert body["checks"]["face_model"] == "ok"
    r = client.post("/v1/detect", files={"file": ("p.jpg", face_photo, "image/jpeg")})
    assert r.status_code == 200 and len(r.json()["faces"]) == 2


@pytest.fixture
def yunet_copy(tmp_path: Path) -> Path:
    from maskops.config import Settings

    src = Settings().yunet_path
    if src is None or not Path(src).is_file():
        pytest.skip("YuNet weights not found (set MASKOPS_YUNET_PATH)")
    dst = tmp_path / "yunet.onnx"
    shutil.copy(src, dst)
    return dst


def test_deleted_detector_weights_keep_serving_and_a_reload_is_refused(
    make_client: Callable[..., TestClient], yunet_copy: Path, face_photo: bytes
) -> None:
    client = make_client(yunet_path=yunet_copy, warm_up=True)  # every worker has its detector
    yunet_copy.unlink()
    ready = client.get("/ready").json()
    assert ready["status"] == "degraded"
    assert "detector weights yunet.onnx" in ready["checks"]["model_files"]
    err = assert_error(client.post("/v1/models/reload"), 409, "reload_failed")
    assert "detector" in err["message"]
    # the refused reload kept the working set: detection goes on, /ready still 200
    for _ in range(3):
        r = client.post("/v1/detect", files={"file": ("p.jpg", face_photo, "image/jpeg")})
        assert r.status_code == 200 and len(r.json()["faces"]) == 2
    ready = client.get("/ready")
    assert ready.status_code == 200 and ready.json()["checks"]["detector"] == "ok"


# ---- SIGTERM on a real server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(models_dir: Path, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int, Path]]:
    """``maskops serve`` on loopback with the tiny models and a SQLite store in ``tmp_path``."""
    port = _free_port()
    env = {
        **os.environ,
        "MASKOPS_MODELS_DIR": str(models_dir),
        "MASKOPS_WORK_DIR": str(tmp_path / "work"),
        "MASKOPS_WARM_UP": "false",
        "MASKOPS_WORKERS": "1",
        "MASKOPS_LOG_FORMAT": "text",
    }
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "maskops.cli", "serve", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2):
                    break
            except OSError:
                assert time.monotonic() < deadline, "server not ready in 60 s"
                time.sleep(0.1)
        yield proc, port, tmp_path / "work" / "maskops.db"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()


@pytest.mark.slow  # a real server process: its start-up alone takes seconds
def test_sigterm_lets_the_request_in_flight_finish_and_exits_0(
    server: tuple[subprocess.Popen[bytes], int, Path], face_photo: bytes
) -> None:
    proc, port, db = server
    boundary = "faultsb0undary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="p.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + face_photo
        + f"\r\n--{boundary}--\r\n".encode()
    )
    head = (
        f"POST /v1/detect HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Request-ID: in-flight-1\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(head + body[: len(body) // 2])  # in flight: half the body sent
        time.sleep(0.3)
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        with pytest.raises(ConnectionRefusedError):  # no new connection is accepted
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        conn.sendall(body[len(body) // 2 :])
        answer = b""
        while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
            chunk = conn.recv(65536)
            if not chunk:
                break
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert b"connection: close" in answer.lower()
    assert proc.wait(30) == 0
    with create_engine(f"sqlite:///{db}").connect() as conn2:  # written by the writer on the way out
        assert list(conn2.scalars(select(RequestRow.request_id))) == ["in-flight-1"]
