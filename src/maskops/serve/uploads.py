"""Reading images out of a request body: multipart files or JSON with base64.

Routes declare both body types in OpenAPI (``IMAGE_BODY`` / ``BATCH_BODY``) and call
``read_images``, which picks the parser by ``Content-Type``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import sys
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from pydantic import ValidationError
from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from maskops.serve.errors import ApiError
from maskops.serve.schemas import BatchJSON, ImageJSON


@dataclass(frozen=True)
class Upload:
    name: str
    data: bytes
    error: ApiError | None = None  # a batch entry that could not be read (its own error entry)


_DATA_URL = re.compile(r"^data:[\w.+/-]*;base64,", re.IGNORECASE)
_NAME = re.compile(r"[^\w .()+-]")


def _safe_name(name: str | None, index: int) -> str:
    """The client's file name without directories or odd characters (it is echoed back)."""
    base = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    base = _NAME.sub("_", base)[:120]
    return base or f"image{index}"


class _InMemoryMultiPartParser(MultiPartParser):
    """Starlette's parser, but a file part never rolls over to a temporary file on disk (its default
    spills parts over 1 MB): uploads are never written to disk. Memory stays bounded by the request
    body limit, which the middleware enforces while the body is read."""

    spool_max_size = sys.maxsize


async def _form(request: Request, max_files: int) -> FormData:
    try:
        async with aclosing(request.stream()) as stream:
            parser = _InMemoryMultiPartParser(request.headers, stream, max_files=max_files, max_fields=1000)
            return await parser.parse()
    except MultiPartException as exc:
        raise ApiError(400, "bad_request", f"malformed multipart body: {exc.message}") from None


def _b64(value: str, name: str) -> bytes:
    text = _DATA_URL.sub("", value.strip(), count=1)
    text = "".join(text.split())
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(
            422, "invalid_base64", f"{name}: image_base64 is not valid base64", {"field": "image_base64"}
        ) from None


def _json_error(exc: ValidationError) -> ApiError:
    details = [{"loc": ["body", *err["loc"]], "msg": err["msg"], "type": err["type"]} for err in exc.errors()]
    first = details[0]
    where = ".".join(str(p) for p in first["loc"])
    return ApiError(422, "validation_error", f"{where}: {first['msg']}", details)


async def read_images(request: Request, *, batch: bool, max_images: int) -> list[Upload]:
    """The images of the request in order.

    Raises:
        ApiError: 415 (body type), 400 (malformed multipart or JSON), 422 (no image, bad base64,
            schema), 413 (more than ``max_images`` images).
    """
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    uploads: list[Upload] = []
    if media == "multipart/form-data":
        form = await _form(request, max_files=max(1000, max_images + 1))
        try:
            files = [v for _, v in form.multi_items() if isinstance(v, UploadFile)]
            if len(files) > max_images:
                raise _too_many(len(files), max_images)
            for i, f in enumerate(files):
                uploads.append(Upload(_safe_name(f.filename, i), await f.read()))
        finally:
            await form.close()
        if not uploads:
            field = "files" if batch else "file"
            raise ApiError(
                422,
                "no_image",
                f"no file in the multipart body: send the image as a file field (e.g. '{field}')",
            )
        return uploads if batch else uploads[:1]
    if media in ("application/json", "") or media.endswith("+json"):
        raw = await request.body()
        if not raw:
            raise ApiError(422, "no_image", "empty body: send multipart/form-data or JSON with image_base64")
        try:
            payload: Any = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ApiError(400, "bad_request", f"body is not valid JSON: {exc}") from None
        try:
            if batch:
                items = BatchJSON.model_validate(payload).images
                if len(items) > max_images:
                    raise _too_many(len(items), max_images)
            else:
                items = [ImageJSON.model_validate(payload)]
        except ValidationError as exc:
            raise _json_error(exc) from None
        if batch and not items:
            raise ApiError(422, "no_image", "images is empty: send at least one image")
        for i, item in enumerate(items):
            name = _safe_name(item.filename, i)
            try:
                uploads.append(Upload(name, _b64(item.image_base64, name)))
            except ApiError as exc:
                if not batch:
                    raise
                uploads.append(Upload(name, b"", exc))
        return uploads
    raise ApiError(
        415,
        "unsupported_media_type",
        f"body type {media!r} is not supported: send multipart/form-data or application/json",
    )


def _too_many(n: int, limit: int) -> ApiError:
    return ApiError(
        413,
        "batch_too_large",
        f"{n} images is over the batch limit of {limit}",
        {"images": n, "max_batch": limit},
    )


def _image_json_schema() -> dict[str, Any]:
    schema = ImageJSON.model_json_schema()
    schema.pop("title", None)
    return schema


IMAGE_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                }
            },
            "application/json": {"schema": _image_json_schema()},
        },
    }
}

BATCH_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "files": {"type": "array", "items": {"type": "string", "format": "binary"}}
                    },
                    "required": ["files"],
                }
            },
            "application/json": {
                "schema": {
                    "type": "object",
                    "properties": {"images": {"type": "array", "items": _image_json_schema()}},
                    "required": ["images"],
                    "additionalProperties": False,
                }
            },
        },
    }
}
