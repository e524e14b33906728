"""``maskops data validate|prepare`` (placeholder; filled in by the data stage)."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True)
