"""The web app's pages: upload (``/``), live webcam (``/live``) and models (``/models``).

Plain HTML + JS files shipped in the package (``serve/static``); no CDN, no build step.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

router = APIRouter(include_in_schema=False)


def _page(name: str) -> FileResponse:
    return FileResponse(STATIC_DIR / name, media_type="text/html", headers={"Cache-Control": "no-cache"})


@router.get("/")
def index() -> FileResponse:
    return _page("index.html")


@router.get("/live")
def live() -> FileResponse:
    return _page("live.html")


@router.get("/models")
def models_page() -> FileResponse:
    return _page("models.html")
