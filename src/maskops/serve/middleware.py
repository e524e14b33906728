"""Pure-ASGI middleware: request id, body-size limit, access log and request metrics.

Pure ASGI (not ``BaseHTTPMiddleware``) so bodies stream through untouched and the limit is
enforced while reading: a ``Content-Length`` over the limit is refused before any byte is read,
and a chunked body is cut off as soon as it passes the limit.
"""

from __future__ import annotations

import json
import logging
import time

from fastapi.routing import APIRoute, APIWebSocketRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from maskops.serve.context import new_request_id, reset_request_id, set_request_id
from maskops.serve.errors import ApiError
from maskops.serve.metrics import ServiceMetrics

logger = logging.getLogger("maskops.serve.access")


class PayloadTooLarge(ApiError):
    def __init__(self, limit: int) -> None:
        super().__init__(
            413,
            "payload_too_large",
            f"request body is over the limit of {limit} bytes",
            {"max_request_bytes": limit},
        )


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return None


def _route_label(scope: Scope, status: int) -> tuple[str, bool]:
    """The metric label of a request's route, and whether that route is part of the API.

    API routes (those in the OpenAPI schema) are labelled by their path template. The web app's
    pages, its static files and the docs share ``<non-api>``; a path no route matches (404) is
    ``<unmatched>``: the label set stays small whatever clients ask for.
    """
    route = scope.get("route")
    if isinstance(route, APIRoute | APIWebSocketRoute) and getattr(route, "include_in_schema", True):
        return route.path, True
    if route is None and status == 404:
        return "<unmatched>", False
    return "<non-api>", False


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp, *, max_body: int, metrics: ServiceMetrics) -> None:
        self.app = app
        self.max_body = max_body
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        request_id = new_request_id(_header(scope, b"x-request-id"))
        token = set_request_id(request_id)
        scope.setdefault("state", {})["request_id"] = request_id
        try:
            if scope["type"] == "websocket":
                await self.app(scope, receive, send)
                return
            await self._http(scope, receive, send, request_id)
        finally:
            reset_request_id(token)

    async def _http(self, scope: Scope, receive: Receive, send: Send, request_id: str) -> None:
        start = time.perf_counter()
        status = 500
        id_header = (b"x-request-id", request_id.encode("latin-1"))

        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                started = True
                status = int(message["status"])
                message["headers"] = [*message.get("headers", []), id_header]
            await send(message)

        self.metrics.inflight.inc()
        try:
            length = _header(scope, b"content-length")
            if length is not None and length.isdigit() and int(length) > self.max_body:
                await self._reject(send_with_id, PayloadTooLarge(self.max_body))
                return

            received = 0

            async def limited_receive() -> Message:
                nonlocal received
                message = await receive()
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    if received > self.max_body:
                        raise PayloadTooLarge(self.max_body)
                return message

            try:
                await self.app(scope, limited_receive, send_with_id)
            except Exception:
                # here (inside the request context) rather than in Starlette's outer error
                # middleware, so the 500 carries the request id and the envelope
                logger.exception("unhandled error in %s %s", scope.get("method"), scope.get("path"))
                if started:
                    raise
                await self._reject(
                    send_with_id,
                    ApiError(500, "internal_error", "internal server error; the request id is in the logs"),
                )
        finally:
            self.metrics.inflight.dec()
            elapsed = time.perf_counter() - start
            route_path, api = _route_label(scope, status)
            method = scope.get("method", "-")
            self.metrics.observe_request(method, route_path, status, elapsed, api=api)
            logger.info(
                "%s %s %d %.1f ms",
                method,
                scope.get("path", ""),
                status,
                elapsed * 1000.0,
                extra={
                    "method": method,
                    "path": scope.get("path", ""),
                    "route": route_path,
                    "status": status,
                    "duration_ms": round(elapsed * 1000.0, 2),
                    "client": (scope.get("client") or ("-",))[0],
                },
            )

    async def _reject(self, send: Send, exc: ApiError) -> None:
        body = json.dumps({"error": exc.info().model_dump()}).encode("utf-8")
        self.metrics.observe_error(exc.code)
        await send(
            {
                "type": "http.response.start",
                "status": exc.status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode("latin-1")),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
