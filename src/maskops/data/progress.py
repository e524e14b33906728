"""Rich progress bars for long steps (data, training, evaluation), drawn on stderr so ``--json`` output
stays clean. Every bar of the package is built here; ``MASKOPS_NO_PROGRESS`` turns them all off.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")

__all__ = ["progress_bar", "progress_enabled", "track"]


def progress_enabled() -> bool:
    """Bars are on unless ``MASKOPS_NO_PROGRESS`` is set (tests set it)."""
    return not os.environ.get("MASKOPS_NO_PROGRESS")


def progress_bar(
    *extra: ProgressColumn, enabled: bool = True, transient: bool = False, bar_width: int | None = 40
) -> Progress:
    """The package's bar: description, bar, done/total, elapsed and remaining time, then ``extra`` columns.

    Args:
        extra: more columns (e.g. ``TextColumn("{task.fields[info]}")``).
        enabled: ``False`` draws nothing (nor does ``MASKOPS_NO_PROGRESS``).
        transient: remove the bar when it finishes.
        bar_width: width of the bar in characters.
    """
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(bar_width=bar_width),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        *extra,
        console=Console(stderr=True),
        transient=transient,
        disable=not (enabled and progress_enabled()),
    )


def track(
    iterable: Iterable[T],
    total: int | None,
    description: str,
    *,
    enabled: bool = True,
    transient: bool = False,
) -> Iterator[T]:
    """Yield from ``iterable`` while drawing a progress bar with count, elapsed and remaining time.

    Args:
        iterable: the work items.
        total: number of items (``None`` when unknown).
        description: label shown left of the bar.
        enabled: ``False`` draws nothing (nor does ``MASKOPS_NO_PROGRESS``).
        transient: remove the bar when it finishes.
    """
    if not (enabled and progress_enabled()):
        yield from iterable
        return
    with progress_bar(transient=transient) as bar:
        task = bar.add_task(description, total=total)
        for item in iterable:
            yield item
            bar.advance(task)
