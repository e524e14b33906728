"""``WS /v1/stream``: the browser sends JPEG frames, the server answers detections per frame.

At most one frame per client is in flight: while one is processed, newer frames replace the
waiting one (the stale frame is dropped and counted), so a slow server never builds a backlog
and the answers stay live. Text messages set options: ``{"min_confidence": 0.6, "uncertain": true}``
(``threshold``, the old name of ``min_confidence``, is still accepted and logs a deprecation warning).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from typing import Any

from fastapi import APIRouter, WebSocket, WebSocketDisconnect

from maskops.inference.images import ImageRejected
from maskops.serve.deps import authenticate
from maskops.serve.errors import ApiError
from maskops.serve.recording import record_detection, site_of
from maskops.serve.routes.common import error_info
from maskops.serve.service import DetectOptions, MaskService, ServiceUnavailable

router = APIRouter(tags=["stream"])
MAX_NOTES = 16  # replies to text messages waiting to be sent, per connection
logger = logging.getLogger(__name__)


def _options(text: str, current: DetectOptions) -> DetectOptions:
    try:
        data: Any = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"options must be a JSON object: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError("options must be a JSON object")
    name = "min_confidence"
    if "threshold" in data:
        logger.warning("stream option 'threshold' is deprecated: use 'min_confidence'")
        if name not in data:
            name = "threshold"
    value = data.get(name, current.min_confidence)
    if value is not None and (
        isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1
    ):
        raise ValueError(f"{name} must be a number in [0, 1] or null")
    uncertain = data.get("uncertain", current.uncertain)
    if not isinstance(uncertain, bool):
        raise ValueError("uncertain must be true or false")
    return DetectOptions(min_confidence=value, uncertain=uncertain, annotated=False)


def _query_options(websocket: WebSocket) -> DetectOptions:
    """``?min_confidence=0.6&uncertain=false`` on the connection URL (``threshold``: the old name)."""
    q = websocket.query_params
    data: dict[str, Any] = {}
    for name in ("min_confidence", "threshold"):
        if name in q:
            try:
                data[name] = float(q[name])
            except ValueError:
                raise ValueError(f"{name} must be a number in [0, 1]") from None
    if "uncertain" in q:
        data["uncertain"] = q["uncertain"].lower() in ("1", "true", "yes", "on")
    return _options(json.dumps(data), DetectOptions())


def _key_from(websocket: WebSocket) -> str | None:
    key = websocket.query_params.get("api_key") or websocket.headers.get("x-api-key")
    auth = websocket.headers.get("authorization", "")
    if not key and auth.lower().startswith("bearer "):
        key = auth[7:].strip()
    return key or None


@router.websocket("/v1/stream")
async def stream(websocket: WebSocket) -> None:
    state = websocket.app.state
    service: MaskService = state.service
    try:
        authenticate(
            state.settings,
            state.keys,
            state.limiter,
            _key_from(websocket),
            websocket.client.host if websocket.client else None,
            "predict",
            getattr(state, "auth_guard", None),
        )
        opts = _query_options(websocket)
    except ApiError as exc:
        await websocket.close(code=1008, reason=exc.message[:120])
        return
    except ValueError as exc:
        await websocket.close(code=1008, reason=str(exc)[:120])
        return
    await websocket.accept()
    service.metrics.stream_clients.inc()
    # each processed frame is recorded as <connection id>-<frame number> (the result's request_id)
    connection_id = str(websocket.scope.get("state", {}).get("request_id") or uuid.uuid4().hex)
    site = site_of(websocket)
    latest: tuple[int, bytes] | None = None
    notes: list[dict[str, Any]] = []
    arrived = asyncio.Event()
    received = dropped = 0

    async def receive() -> None:
        nonlocal latest, received, dropped, opts
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("bytes") is not None:
                received += 1
                if latest is not None:
                    dropped += 1
                    service.metrics.stream_dropped.inc()
                latest = (received, message["bytes"])
                arrived.set()
            elif message.get("text") is not None:
                try:
                    opts = _options(message["text"], opts)
                    notes.append(
                        {
                            "type": "options",
                            "min_confidence": opts.min_confidence,
                            "uncertain": opts.uncertain,
                        }
                    )
                except ValueError as exc:
                    notes.append({"type": "error", "error": {"code": "invalid_options", "message": str(exc)}})
                del notes[:-MAX_NOTES]  # a client that floods options and never reads keeps only the last
                arrived.set()

    receiver = asyncio.create_task(receive())
    try:
        while True:
            waiter = asyncio.create_task(arrived.wait())
            await asyncio.wait({waiter, receiver}, return_when=asyncio.FIRST_COMPLETED)
            if not waiter.done():
                waiter.cancel()
                break
            arrived.clear()
            while notes:
                await websocket.send_json(notes.pop(0))
            if latest is None:
                continue
            frame_no, data = latest
            latest = None
            t0 = time.perf_counter()
            try:
                out = await service.detect(data, f"frame{frame_no}", opts)
            except (ImageRejected, ServiceUnavailable) as exc:
                await websocket.send_json(
                    {"type": "error", "frame": frame_no, "error": error_info(exc).model_dump()}
                )
                continue
            frame_id = f"{connection_id}-{frame_no}"
            record_detection(websocket, out, "stream", request_id=frame_id, site=site)
            await websocket.send_json(
                {
                    "type": "result",
                    "frame": frame_no,
                    "request_id": frame_id,
                    "width": out.image.width,
                    "height": out.image.height,
                    "faces": out.faces,
                    "counts": out.counts,
                    "timings_ms": {**out.timings_ms, "total": round((time.perf_counter() - t0) * 1000.0, 2)},
                    "received": received,
                    "dropped": dropped,
                    "model": {"name": out.model.name, "version": out.model.version},
                }
            )
    except WebSocketDisconnect:
        pass
    finally:
        receiver.cancel()
        service.metrics.stream_clients.dec()
        logger.info("stream closed: %d frames received, %d dropped", received, dropped)
