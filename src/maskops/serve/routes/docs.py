"""The API docs (``/docs``, Swagger UI) and ``/favicon.ico``, served with local assets only.

FastAPI's own docs page loads Swagger UI from a CDN, so without internet it is blank. Here its
assets come from the ``fastapi-offline`` package (the ``swagger-ui-dist`` 5 bundle), mounted under
``/static/vendor``. There is no ``/redoc``: ReDoc 2 always loads its logo from its vendor's CDN. No
page of the app loads anything from another host.
"""

from __future__ import annotations

from pathlib import Path

import fastapi_offline
from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import FileResponse, HTMLResponse

from maskops.serve.routes.pages import STATIC_DIR

VENDOR_DIR = Path(fastapi_offline.__file__).resolve().parent / "static"
VENDOR_URL = "/static/vendor"
OAUTH2_REDIRECT = "/docs/oauth2-redirect"

router = APIRouter(include_in_schema=False)


def _root(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


@router.get("/docs")
def swagger_ui(request: Request) -> HTMLResponse:
    root = _root(request)
    return get_swagger_ui_html(
        openapi_url=f"{root}{request.app.openapi_url}",
        title=f"{request.app.title} - API docs",
        swagger_js_url=f"{root}{VENDOR_URL}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{VENDOR_URL}/swagger-ui.css",
        swagger_favicon_url=f"{root}/favicon.ico",
        oauth2_redirect_url=f"{root}{OAUTH2_REDIRECT}",
        # no validator badge: Swagger UI would send the spec to validator.swagger.io
        swagger_ui_parameters={"validatorUrl": None},
    )


@router.get(OAUTH2_REDIRECT)
def swagger_ui_redirect() -> HTMLResponse:
    return get_swagger_ui_oauth2_redirect_html()


@router.get("/favicon.ico")
def favicon() -> FileResponse:
    return FileResponse(
        STATIC_DIR / "favicon.ico", media_type="image/x-icon", headers={"Cache-Control": "max-age=86400"}
    )
