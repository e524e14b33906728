"""The one error shape of the API: ``{"error": {"code", "message", "details", "request_id"}}``.

Routes and dependencies raise ``ApiError`` (or a library's domain error, mapped here); the handlers
below turn every error, including FastAPI's validation errors, Starlette's 404/405 and anything
unexpected, into that envelope. Responses never carry stack traces or server paths.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from maskops.serve.context import current_request_id

logger = logging.getLogger(__name__)


class ErrorInfo(BaseModel):
    code: str = Field(description="stable machine-readable code, e.g. invalid_image")
    message: str = Field(description="what went wrong, for people")
    details: Any = Field(default=None, description="structured context (validation errors, limits)")
    request_id: str | None = Field(default=None, description="the X-Request-ID of the request")


class ErrorResponse(BaseModel):
    error: ErrorInfo


class ApiError(Exception):
    """An error with its HTTP status and envelope fields.

    Args:
        status: HTTP status code.
        code: machine-readable code.
        message: human-readable message (no paths, no traces).
        details: optional JSON-able context.
        headers: extra response headers (``Retry-After``, ``WWW-Authenticate``).
    """

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers or {}

    def info(self) -> ErrorInfo:
        return ErrorInfo(
            code=self.code, message=self.message, details=self.details, request_id=current_request_id()
        )


_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    408: "request_timeout",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}


def error_response(
    status: int, code: str, message: str, details: Any = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = ErrorResponse(
        error=ErrorInfo(code=code, message=message, details=details, request_id=current_request_id())
    )
    return JSONResponse(jsonable_encoder(body), status_code=status, headers=headers)


def _validation_details(errors: Any) -> list[dict[str, Any]]:
    # the offending input is left out: it can be a megabyte of base64 or a secret
    out = []
    for err in errors:
        item = {"loc": list(err.get("loc", ())), "msg": str(err.get("msg", "")), "type": err.get("type", "")}
        out.append(item)
    return out


def _count(request: Request, code: str) -> None:
    metrics = getattr(request.app.state, "metrics", None)
    if metrics is not None:
        metrics.observe_error(code)


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    _count(request, exc.code)
    if exc.status >= 500 and exc.code != "not_ready":  # readiness probes would flood the log
        logger.warning("%s: %s", exc.code, exc.message)
    return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _STATUS_CODES.get(exc.status_code, f"http_{exc.status_code}")
    _count(request, code)
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    return error_response(exc.status_code, code, message, headers=dict(exc.headers or {}))


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    _count(request, "validation_error")
    details = _validation_details(exc.errors())
    first = details[0] if details else {"loc": [], "msg": "invalid request"}
    where = ".".join(str(p) for p in first["loc"])
    message = f"{where}: {first['msg']}" if where else str(first["msg"])
    return error_response(422, "validation_error", message, details)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    _count(request, "internal_error")
    logger.exception("unhandled error: %s", type(exc).__name__)
    return error_response(500, "internal_error", "internal server error; the request id is in the logs")


def install_error_handlers(app: FastAPI) -> None:
    """Route every error through the envelope."""
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected)


# OpenAPI: the error responses every route may give
COMMON_ERRORS: dict[int | str, dict[str, Any]] = {
    422: {"model": ErrorResponse, "description": "invalid request"},
    429: {"model": ErrorResponse, "description": "rate limited (see Retry-After)"},
    401: {"model": ErrorResponse, "description": "missing or invalid API key"},
    403: {"model": ErrorResponse, "description": "the key's role does not allow this"},
}
IMAGE_ERRORS: dict[int | str, dict[str, Any]] = {
    **COMMON_ERRORS,
    400: {"model": ErrorResponse, "description": "malformed body"},
    413: {"model": ErrorResponse, "description": "body, image or batch over its limit"},
    415: {"model": ErrorResponse, "description": "not an image"},
    503: {"model": ErrorResponse, "description": "model not loaded or server overloaded"},
    504: {"model": ErrorResponse, "description": "processing timed out"},
}
