"""No API key reaches the logs, also when a WebSocket client gives it in the URL (``?api_key=``):
uvicorn logs each handshake with its path and query. Against a real uvicorn started with the
options ``maskops serve`` gives it, the service's log handler on a captured stream."""

from __future__ import annotations

import io
import json
import logging
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import uvicorn
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from maskops.commands.serve import uvicorn_options
from maskops.serve.app import create_app
from maskops.serve.logs import REDACTED, RedactKeysFilter, configure_logging
from maskops.serve.settings import ServeSettings

WAIT_S = 60.0  # generous waits for events on a loaded machine (not a timing threshold)
GOOD_KEY = "good-" + "G" * 40
BAD_KEY = "bad-" + "B" * 40


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_filter_hides_a_key_in_a_query_and_keeps_the_rest() -> None:
    record = logging.LogRecord(
        "uvicorn.error",
        logging.INFO,
        __file__,
        1,
        '%s - "WebSocket %s" %s',
        ("127.0.0.1:5000", f"/v1/stream?site=gate&API_KEY={GOOD_KEY}&min_confidence=0.5", "[accepted]"),
        None,
    )
    record.color_message = record.msg  # as uvicorn adds it
    assert RedactKeysFilter().filter(record) is True
    message = record.getMessage()
    assert GOOD_KEY not in message and not hasattr(record, "color_message")
    assert message == (
        f'127.0.0.1:5000 - "WebSocket /v1/stream?site=gate&API_KEY={REDACTED}&min_confidence=0.5" [accepted]'
    )
    plain = logging.LogRecord("x", logging.INFO, __file__, 1, "api_key is a word here: %d", (3,), None)
    assert RedactKeysFilter().filter(plain) and plain.getMessage() == "api_key is a word here: 3"


def test_a_websocket_key_in_the_url_is_not_logged(
    make_settings: Callable[..., ServeSettings], tmp_path: Path, plain_jpeg: bytes
) -> None:
    keys = tmp_path / "api-keys"
    keys.write_text(f"cam:predict:{GOOD_KEY}\n", encoding="utf-8")
    settings = make_settings(host="127.0.0.1", port=_free_port(), auth=True, api_keys_file=keys)
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    configure_logging("json", "INFO", stream)
    server = uvicorn.Server(uvicorn.Config(create_app(settings), **uvicorn_options(settings)))
    thread = threading.Thread(target=server.run, daemon=True)
    try:
        thread.start()
        deadline = time.monotonic() + WAIT_S
        while not server.started and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.started, "uvicorn did not start"
        url = f"ws://127.0.0.1:{settings.port}/v1/stream"
        with connect(f"{url}?api_key={GOOD_KEY}", open_timeout=WAIT_S) as ws:
            ws.send(plain_jpeg)
            assert json.loads(ws.recv(timeout=WAIT_S))["type"] == "result"
        with pytest.raises(InvalidStatus):
            connect(f"{url}?api_key={BAD_KEY}", open_timeout=WAIT_S)
    finally:
        server.should_exit = True
        thread.join(WAIT_S)
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    logs = stream.getvalue()
    handshakes = [json.loads(line)["message"] for line in logs.splitlines() if "WebSocket /v1/stream" in line]
    assert len(handshakes) == 2, logs  # uvicorn logged both handshakes...
    assert all(f"api_key={REDACTED}" in line for line in handshakes), handshakes
    assert GOOD_KEY not in logs and BAD_KEY not in logs  # ...and no key
    assert "failed authentication" in logs
