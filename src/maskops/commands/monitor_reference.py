"""``maskops monitor reference``: the reference profile of a shipped model, from the task's val and test images."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the command to ``maskops monitor``."""
