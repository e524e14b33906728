"""``maskops monitor report``: an Evidently report of a window (reference against current)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the command to ``maskops monitor``."""
