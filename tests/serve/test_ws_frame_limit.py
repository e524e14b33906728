"""The WebSocket message limit of ``maskops serve``: against a real uvicorn started with the options
the command gives it, a message longer than one image is closed with 1009 when its frame header
announces the length, before the payload is read; other connections carry on."""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator

import pytest
import uvicorn
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from maskops.commands.serve import uvicorn_options
from maskops.serve.app import create_app
from maskops.serve.settings import ServeSettings

WAIT_S = 60.0  # generous waits for events on a loaded machine (not a timing threshold)
LIMIT = 64 * 1024  # max_image_bytes of these tests, hence uvicorn's ws_max_size


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def ws_url(make_settings: Callable[..., ServeSettings]) -> Iterator[str]:
    settings = make_settings(host="127.0.0.1", port=_free_port(), max_image_bytes=LIMIT)
    options = uvicorn_options(settings)
    assert options["ws_max_size"] == LIMIT
    server = uvicorn.Server(uvicorn.Config(create_app(settings), **options))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + WAIT_S
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.started, "uvicorn did not start"
    yield f"ws://127.0.0.1:{settings.port}/v1/stream"
    server.should_exit = True
    thread.join(WAIT_S)


def _close_code(url: str, message: bytes | str) -> int | None:
    """Send ``message`` and return the close code the server sent (``None``: it did not close)."""
    with connect(url, max_size=None, open_timeout=WAIT_S, close_timeout=WAIT_S) as ws:
        try:
            ws.send(message)
            ws.recv(timeout=WAIT_S)
        except ConnectionClosed as exc:
            return exc.rcvd.code if exc.rcvd is not None else None
        except TimeoutError:
            return None
    return None


def test_serve_gives_uvicorn_websocket_limits(make_settings: Callable[..., ServeSettings]) -> None:
    opts = uvicorn_options(make_settings(max_image_bytes=2 * 1024 * 1024))
    assert opts["ws_max_size"] == 2 * 1024 * 1024  # one image, not uvicorn's 16 MiB default
    assert opts["ws_per_message_deflate"] is False
    assert opts["ws_max_queue"] <= 8
    assert opts["ws_ping_interval"] > 0 and opts["ws_ping_timeout"] > 0


def test_an_oversized_binary_frame_is_closed_with_1009(ws_url: str, plain_jpeg: bytes) -> None:
    assert _close_code(ws_url, b"\xff" * (LIMIT + 1)) == 1009
    with connect(ws_url, open_timeout=WAIT_S) as ws:  # a new connection is served as usual
        ws.send(plain_jpeg)
        assert json.loads(ws.recv(timeout=WAIT_S))["type"] == "result"


def test_an_oversized_text_frame_is_closed_with_1009(ws_url: str) -> None:
    assert _close_code(ws_url, "x" * (LIMIT + 1)) == 1009


def test_a_frame_at_the_limit_is_answered_not_closed(ws_url: str) -> None:
    with connect(ws_url, open_timeout=WAIT_S) as ws:
        ws.send(b"\x00" * LIMIT)  # not an image: answered with a reason, the connection stays
        assert json.loads(ws.recv(timeout=WAIT_S))["error"]["code"]
        ws.send("not json")  # still open: this is answered too
        assert json.loads(ws.recv(timeout=WAIT_S))["error"]["code"] == "invalid_options"


def _handshake(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT_S)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /v1/stream HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        assert chunk, "connection closed during the handshake"
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def test_a_frame_announcing_a_terabyte_is_closed_before_its_payload(ws_url: str) -> None:
    """Only the 14-byte header of a 1 TiB frame is sent: the server answers 1009 without waiting
    for (or buffering) a payload that never comes."""
    port = int(ws_url.rsplit(":", 1)[1].split("/")[0])
    with _handshake(port) as sock:
        # FIN + binary opcode; masked, 64-bit length; a 4-byte mask; 16 payload bytes only
        sock.sendall(b"\x82\xff" + struct.pack("!Q", 1 << 40) + os.urandom(4) + b"\x00" * 16)
        frame = b""
        while len(frame) < 4:
            chunk = sock.recv(4096)
            if not chunk:
                break
            frame += chunk
    assert frame[0] == 0x88, frame  # a close frame
    assert struct.unpack("!H", frame[2:4])[0] == 1009, frame
