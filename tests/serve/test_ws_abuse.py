"""Abuse of the WebSocket and of slow HTTP bodies: garbage and oversized frames answered with reasons,
floods kept to a bounded backlog, other clients unaffected, a body sent a byte at a time cut off."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import uvicorn
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from maskops.serve.app import create_app
from maskops.serve.routes import stream as stream_mod
from maskops.serve.service import MaskService
from maskops.serve.settings import ServeSettings

WAIT_S = 60.0  # generous waits for events on a loaded machine (not a timing threshold)


def _wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


@pytest.fixture
def held_detect(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[threading.Event, threading.Event]]:
    """The first frame's detection waits for ``release``: frames and messages pile up meanwhile."""
    entered, release = threading.Event(), threading.Event()
    original = MaskService.detect_sync
    calls: list[str] = []

    def held(
        self: MaskService, models: object, data: bytes, name: str, *args: object, **kw: object
    ) -> object:
        calls.append(name)
        if len(calls) == 1:
            entered.set()
            release.wait(WAIT_S)
        return original(self, models, data, name, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(MaskService, "detect_sync", held)
    yield entered, release
    release.set()


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (b"", "invalid_image"),
        (b"\x00" * 100, "unsupported_media_type"),
        (b"\xff\xd8\xff\xe0" + b"garbage" * 50, "invalid_image"),
        (b"\x89PNG\r\n\x1a\n", "invalid_image"),
    ],
)
def test_garbage_frames_are_answered_with_reasons(
    client: TestClient, plain_jpeg: bytes, frame: bytes, code: str
) -> None:
    with client.websocket_connect("/v1/stream") as ws:
        ws.send_bytes(frame)
        msg = ws.receive_json()
        assert msg["type"] == "error" and msg["error"]["code"] == code and msg["error"]["message"], msg
        ws.send_text("{not json")
        assert ws.receive_json()["error"]["code"] == "invalid_options"
        ws.send_text("[1, 2]")
        assert ws.receive_json()["error"]["code"] == "invalid_options"
        ws.send_bytes(plain_jpeg)  # the stream still works
        assert ws.receive_json()["type"] == "result"


def test_an_oversized_frame_is_refused_undecoded(
    make_client: Callable[..., TestClient], plain_jpeg: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = make_client(max_image_bytes=4096)
    big = plain_jpeg + b"\x00" * 10_000
    with client.websocket_connect("/v1/stream") as ws:
        ws.send_bytes(big)
        msg = ws.receive_json()
        assert msg["error"]["code"] == "image_too_large" and "4096" in msg["error"]["message"]
        ws.send_bytes(plain_jpeg)
        assert ws.receive_json()["type"] == "result"


def test_a_frame_flood_is_dropped_not_queued(
    client: TestClient, plain_jpeg: bytes, held_detect: tuple[threading.Event, threading.Event]
) -> None:
    entered, release = held_detect
    metrics = client.app.state.metrics  # type: ignore[attr-defined]
    with client.websocket_connect("/v1/stream") as ws:
        ws.send_bytes(plain_jpeg)
        assert entered.wait(WAIT_S)
        for _ in range(300):  # far faster than the server answers
            ws.send_bytes(plain_jpeg)
        _wait_until(lambda: metrics.stream_dropped._value.get() >= 299)
        release.set()
        first, last = ws.receive_json(), ws.receive_json()
    # two answers for 301 frames: the one in flight and the newest; the 299 between were dropped
    assert (first["frame"], last["frame"]) == (1, 301)
    assert last["received"] == 301 and last["dropped"] == 299


def test_an_options_flood_keeps_a_bounded_backlog(
    client: TestClient,
    plain_jpeg: bytes,
    held_detect: tuple[threading.Event, threading.Event],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    entered, release = held_detect
    parsed: list[str] = []
    real = stream_mod._options

    def counting(text: str, current: stream_mod.DetectOptions) -> stream_mod.DetectOptions:
        parsed.append(text)
        return real(text, current)

    monkeypatch.setattr(stream_mod, "_options", counting)
    n = 200
    with client.websocket_connect("/v1/stream") as ws:
        ws.send_bytes(plain_jpeg)
        assert entered.wait(WAIT_S)
        for i in range(n):  # the server cannot send while the frame is held: replies would pile up
            ws.send_text(f'{{"min_confidence": {i}}}')
        _wait_until(lambda: len(parsed) >= n + 1)  # + the connection's query options
        release.set()
        assert ws.receive_json()["frame"] == 1
        ws.send_bytes(plain_jpeg)
        notes = []
        while (msg := ws.receive_json())["type"] != "result":
            notes.append(msg)
    assert len(notes) == stream_mod.MAX_NOTES  # only the newest replies were kept
    assert all(m["error"]["code"] == "invalid_options" for m in notes)
    assert notes[-1]["error"]["message"].startswith("min_confidence")


def test_other_clients_are_unaffected_by_a_flooding_one(
    client: TestClient, plain_jpeg: bytes, held_detect: tuple[threading.Event, threading.Event]
) -> None:
    entered, release = held_detect
    with client.websocket_connect("/v1/stream") as flooder:
        flooder.send_bytes(plain_jpeg)  # held: this connection's loop is busy
        assert entered.wait(WAIT_S)
        for _ in range(100):
            flooder.send_bytes(b"garbage")
            flooder.send_text("garbage")
        with client.websocket_connect("/v1/stream") as other:
            other.send_bytes(plain_jpeg)
            assert other.receive_json()["type"] == "result"
        assert client.post("/v1/detect", files={"file": ("a.jpg", plain_jpeg)}).status_code == 200
        release.set()
        assert flooder.receive_json()["frame"] == 1


def test_a_stream_without_a_valid_key_is_closed_with_1008(
    make_client: Callable[..., TestClient], tmp_path: Path
) -> None:
    client = make_client(auth=True, keys_db=tmp_path / "k.db")
    for url in ("/v1/stream", "/v1/stream?api_key=mko_00000000_nope"):
        with pytest.raises(WebSocketDisconnect) as info, client.websocket_connect(url) as ws:
            ws.receive_json()
        assert info.value.code == 1008


# --- slow clients, against a real server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def live_server(make_settings: Callable[..., ServeSettings]) -> Iterator[int]:
    port = _free_port()
    app = create_app(make_settings(port=port, request_body_timeout_s=1.0))
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    _wait_until(lambda: server.started or not thread.is_alive())
    assert server.started, "uvicorn did not start"
    yield port
    server.should_exit = True
    thread.join(WAIT_S)


def test_a_slow_body_is_cut_off_with_408(live_server: int) -> None:
    head = (
        "POST /v1/detect HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
        "Content-Length: 1000\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", live_server), timeout=WAIT_S) as sock:
        sock.sendall(head.encode())
        sock.settimeout(0.5)
        answer = b""
        sent = 0
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline and sent < 999:
            try:
                sock.sendall(b"x")  # a byte at a time, slower than the 1 s allowed for the body
                sent += 1
            except OSError:
                break
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                break
            answer += chunk
            if b"\r\n\r\n" in answer:
                break
        sock.settimeout(WAIT_S)
        while True:  # read the rest until the server closes the connection
            try:
                chunk = sock.recv(65536)
            except OSError:
                break
            if not chunk:
                break
            answer += chunk
    assert sent < 999, "the server read the whole slow body"
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b'"code":"request_timeout"' in answer.replace(b" ", b"")
