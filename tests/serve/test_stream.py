"""WS /v1/stream: detections per frame, options, errors that keep the stream open, stale frames dropped."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from maskops.serve.service import MaskService


def test_frames_get_detections(client: TestClient, face_photo: bytes) -> None:
    with client.websocket_connect("/v1/stream") as ws:
        ws.send_bytes(face_photo)
        msg = ws.receive_json()
        assert msg["type"] == "result" and msg["frame"] == 1
        assert (msg["width"], msg["height"]) == (400, 301)
        assert len(msg["faces"]) == 2 and sum(msg["counts"].values()) == 2
        assert msg["model"]["name"] == "facemask"
        assert msg["dropped"] == 0
        ws.send_bytes(face_photo)
        assert ws.receive_json()["frame"] == 2


def test_options_and_errors_keep_the_stream_open(client: TestClient, face_photo: bytes) -> None:
    with client.websocket_connect("/v1/stream?min_confidence=0.99") as ws:
        ws.send_bytes(face_photo)
        assert [f["label"] for f in ws.receive_json()["faces"]] == ["uncertain", "uncertain"]
        ws.send_text('{"uncertain": false}')
        assert ws.receive_json() == {"type": "options", "min_confidence": 0.99, "uncertain": False}
        ws.send_bytes(face_photo)
        assert all(f["label"] != "uncertain" for f in ws.receive_json()["faces"])
        ws.send_text('{"min_confidence": 7}')
        assert ws.receive_json()["error"]["code"] == "invalid_options"
        ws.send_bytes(b"definitely not a jpeg")
        err = ws.receive_json()
        assert err["type"] == "error" and err["error"]["code"] == "unsupported_media_type"
        ws.send_bytes(face_photo)
        assert ws.receive_json()["type"] == "result"


def test_the_old_option_name_threshold_still_works_with_a_warning(
    client: TestClient, face_photo: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    with client.websocket_connect("/v1/stream?threshold=0.99") as ws:
        ws.send_bytes(face_photo)
        assert [f["label"] for f in ws.receive_json()["faces"]] == ["uncertain", "uncertain"]
        ws.send_text('{"threshold": 0.5}')
        assert ws.receive_json() == {"type": "options", "min_confidence": 0.5, "uncertain": True}
        ws.send_text('{"threshold": 7}')
        assert "threshold" in ws.receive_json()["error"]["message"]
    assert "'threshold' is deprecated" in caplog.text


def test_bad_connection_options_are_refused(client: TestClient) -> None:
    with (
        pytest.raises(WebSocketDisconnect) as info,
        client.websocket_connect("/v1/stream?threshold=abc") as ws,
    ):
        ws.receive_json()
    assert info.value.code == 1008


def test_auth_applies_to_the_stream(
    make_client: Callable[..., TestClient], tmp_path: Path, plain_jpeg: bytes
) -> None:
    client = make_client(auth=True, keys_db=tmp_path / "k.db")
    _, plain = client.app.state.keys.create("cam")  # type: ignore[attr-defined]
    with pytest.raises(WebSocketDisconnect) as info, client.websocket_connect("/v1/stream") as ws:
        ws.receive_json()
    assert info.value.code == 1008
    with client.websocket_connect(f"/v1/stream?api_key={plain}") as ws:
        ws.send_bytes(plain_jpeg)
        assert ws.receive_json()["type"] == "result"


def test_at_most_one_frame_in_flight_stale_frames_are_dropped(
    client: TestClient, plain_jpeg: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    entered, release = threading.Event(), threading.Event()
    original = MaskService.detect_sync
    names: list[str] = []

    def slow(
        self: MaskService, models: object, data: bytes, name: str, *args: object, **kw: object
    ) -> object:
        names.append(name)
        if len(names) == 1:
            entered.set()
            release.wait(10)
        return original(self, models, data, name, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(MaskService, "detect_sync", slow)
    metrics = client.app.state.metrics  # type: ignore[attr-defined]
    with client.websocket_connect("/v1/stream") as ws:
        ws.send_bytes(plain_jpeg)
        assert entered.wait(10)
        for _ in range(3):  # frames 2, 3, 4 arrive while frame 1 is processed
            ws.send_bytes(plain_jpeg)
        deadline = time.monotonic() + 10
        while metrics.stream_dropped._value.get() < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        release.set()
        first, second = ws.receive_json(), ws.receive_json()
    assert (first["frame"], second["frame"]) == (1, 4)
    assert second["dropped"] == 2 and second["received"] == 4
    assert names == ["frame1", "frame4"]
