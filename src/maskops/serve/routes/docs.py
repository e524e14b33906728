"""The API docs (``/docs``, Swagger UI) and ``/favicon.ico``, served with local assets only.

FastAPI's own docs page loads Swagger UI from a CDN, so without internet it is blank. Here its
assets come from the ``fastapi-offline`` package (the ``swagger-ui-dist`` 5 bundle), mounted under
``/static/vendor``. There is no ``/redoc``: ReDoc 2 always loads its logo from its vendor's CDN. No
page of the app loads anything from another host.
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

import fastapi_offline
from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import FileResponse, HTMLResponse

from maskops.serve.middleware import CONTENT_SECURITY_POLICY
from maskops.serve.routes.pages import STATIC_DIR

VENDOR_DIR = Path(fastapi_offline.__file__).resolve().parent / "static"
VENDOR_URL = "/static/vendor"
OAUTH2_REDIRECT = "/docs/oauth2-redirect"

router = APIRouter(include_in_schema=False)

_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def _allow_inline_scripts(page: HTMLResponse) -> HTMLResponse:
    """The app's strict policy, plus the page's own inline scripts allowed by their hash.

    FastAPI's Swagger UI pages start Swagger UI from an inline script; a hash allows that exact
    script and nothing else (no ``'unsafe-inline'``).
    """
    html = bytes(page.body).decode("utf-8")
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(m.encode("utf-8")).digest()).decode("ascii") + "'"
        for m in _INLINE_SCRIPT.findall(html)
    )
    policy = CONTENT_SECURITY_POLICY.replace("script-src 'self'", f"script-src 'self' {hashes}".rstrip())
    page.headers["Content-Security-Policy"] = policy
    return page


def _root(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


@router.get("/docs")
def swagger_ui(request: Request) -> HTMLResponse:
    root = _root(request)
    page = get_swagger_ui_html(
        openapi_url=f"{root}{request.app.openapi_url}",
        title=f"{request.app.title} - API docs",
        swagger_js_url=f"{root}{VENDOR_URL}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{VENDOR_URL}/swagger-ui.css",
        swagger_favicon_url=f"{root}/favicon.ico",
        oauth2_redirect_url=f"{root}{OAUTH2_REDIRECT}",
        # no validator badge: Swagger UI would send the spec to validator.swagger.io
        swagger_ui_parameters={"validatorUrl": None},
    )
    return _allow_inline_scripts(page)


@router.get(OAUTH2_REDIRECT)
def swagger_ui_redirect() -> HTMLResponse:
    return _allow_inline_scripts(get_swagger_ui_oauth2_redirect_html())


@router.get("/favicon.ico")
def favicon() -> FileResponse:
    return FileResponse(
        STATIC_DIR / "favicon.ico", media_type="image/x-icon", headers={"Cache-Control": "max-age=86400"}
    )
