"""``maskops monitor run``: all monitoring checks and alert rules, once or on an interval."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the command to ``maskops monitor``."""
