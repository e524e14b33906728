"""Liveness."""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel

from maskops import __version__

router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str
    version: str


@router.get("/health", response_model=Health)
def health() -> Health:
    """Liveness: the process is up and answering."""
    return Health(status="ok", version=__version__)
