"""Rich progress bars for long data steps, drawn on stderr so ``--json`` output stays clean."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")


def progress_enabled() -> bool:
    """Bars are on unless ``MASKOPS_NO_PROGRESS`` is set (tests set it)."""
    return not os.environ.get("MASKOPS_NO_PROGRESS")


def track(iterable: Iterable[T], total: int | None, description: str) -> Iterator[T]:
    """Yield from ``iterable`` while drawing a progress bar with count, elapsed and remaining time.

    Args:
        iterable: the work items.
        total: number of items (``None`` when unknown).
        description: label shown left of the bar.
    """
    if not progress_enabled():
        yield from iterable
        return
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=False) as bar:
        task = bar.add_task(description, total=total)
        for item in iterable:
            yield item
            bar.advance(task)
