"""Mapping the service's domain errors to API errors, and small response helpers shared by routers."""

from __future__ import annotations

from fastapi import Request

from maskops.inference.images import ImageRejected
from maskops.serve.errors import ApiError, ErrorInfo
from maskops.serve.schemas import DetectResult, Face, ImageInfo, ModelRef
from maskops.serve.service import (
    DetectOutcome,
    LoadedModel,
    ReloadRefused,
    ServiceUnavailable,
    UnknownModel,
)

# HTTP status of each ImageRejected code
IMAGE_STATUS = {"image_too_large": 413, "unsupported_media_type": 415, "invalid_image": 422}


def to_api_error(exc: Exception) -> ApiError:
    """The API error for a domain error; anything else is re-raised by the caller as unexpected."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, ImageRejected):
        return ApiError(IMAGE_STATUS[exc.code], exc.code, exc.message, exc.details or None)
    if isinstance(exc, ServiceUnavailable):
        status = 504 if exc.code == "timeout" else 503
        headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else None
        return ApiError(status, exc.code, exc.message, headers=headers)
    if isinstance(exc, ReloadRefused):
        return ApiError(409, exc.code, exc.message, {"kept_models": True, "errors": exc.lost})
    if isinstance(exc, UnknownModel):
        return ApiError(404, "unknown_model", str(exc), {"loaded": exc.known})
    raise exc


def error_info(exc: Exception) -> ErrorInfo:
    return to_api_error(exc).info()


def request_id(request: Request) -> str:
    return str(request.scope.get("state", {}).get("request_id", ""))


def model_ref(model: LoadedModel) -> ModelRef:
    return ModelRef(name=model.name, task=model.spec.task, version=model.version)


def detect_result(out: DetectOutcome) -> DetectResult:
    return DetectResult(
        image=ImageInfo(
            filename=out.image.name, format=out.image.format, width=out.image.width, height=out.image.height
        ),
        faces=[Face.model_validate(rec) for rec in out.faces],
        counts=out.counts,
        timings_ms=out.timings_ms,
        annotated_jpeg_base64=out.annotated_jpeg,
    )
