"""Pure-ASGI middleware: request id, body-size limit, security headers, access log and request metrics.

Pure ASGI (not ``BaseHTTPMiddleware``) so bodies stream through untouched and the limit is
enforced while reading: a ``Content-Length`` over the limit is refused before any byte is read,
and a chunked body is cut off as soon as it passes the limit.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time

from fastapi.routing import APIRoute, APIWebSocketRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from maskops.serve.context import new_request_id, reset_request_id, set_request_id
from maskops.serve.errors import ApiError
from maskops.serve.metrics import ServiceMetrics

logger = logging.getLogger("maskops.serve.access")


# a strict policy for every response: nothing inline, nothing from another host. ``blob:``/``data:``
# images are the upload previews and crops the pages build; a route may send its own policy
# (the Swagger UI page allows its one inline script by hash, see routes/docs.py)
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "media-src 'self' blob:; connect-src 'self'; font-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode("latin-1")),
)


def with_security_headers(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """``headers`` plus each security header the response does not set itself."""
    present = {k.lower() for k, _ in headers}
    return [*headers, *((k, v) for k, v in SECURITY_HEADERS if k not in present)]


class PayloadTooLarge(ApiError):
    def __init__(self, limit: int) -> None:
        super().__init__(
            413,
            "payload_too_large",
            f"request body is over the limit of {limit} bytes",
            {"max_request_bytes": limit},
        )


class RequestTimeout(ApiError):
    def __init__(self, limit: float) -> None:
        super().__init__(
            408,
            "request_timeout",
            f"the request body did not arrive within {limit:g} s",
            {"request_body_timeout_s": limit},
            headers={"Connection": "close"},
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
    def __init__(
        self, app: ASGIApp, *, max_body: int, metrics: ServiceMetrics, body_timeout: float | None = None
    ) -> None:
        self.app = app
        self.max_body = max_body
        self.metrics = metrics
        self.body_timeout = body_timeout  # seconds for the whole body (slow clients); None = no limit

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
                message["headers"] = with_security_headers([*message.get("headers", []), id_header])
            await send(message)

        self.metrics.inflight.inc()
        self.metrics.busy += 1
        try:
            length = _header(scope, b"content-length")
            if length is not None and length.isdigit() and int(length) > self.max_body:
                await self._reject(send_with_id, PayloadTooLarge(self.max_body))
                return

            received = 0
            body_done = False
            deadline = None if self.body_timeout is None else time.monotonic() + self.body_timeout

            async def limited_receive() -> Message:
                nonlocal received, body_done
                if body_done or deadline is None:
                    message = await receive()  # after the body: waiting for a disconnect is fine
                else:
                    try:
                        message = await asyncio.wait_for(receive(), max(deadline - time.monotonic(), 0.0))
                    except TimeoutError:
                        raise RequestTimeout(self.body_timeout or 0.0) from None
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    body_done = not message.get("more_body", False)
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
            self.metrics.busy -= 1
            self.metrics.last_done = time.monotonic()
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
