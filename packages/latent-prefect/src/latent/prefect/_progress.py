"""A Rich progress bar for large maps, shown when `latent run` asks for one.

It counts rows — done, cached, failed — and how many are waiting on a rate or concurrency
limit right now, so a throttled evaluation reads as waiting, not as silence. With a bar shown,
`.map` waits for its rows before returning, so that the bar ends at the truth.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

MIN_ITEMS = 100

_enabled: contextvars.ContextVar[bool] = contextvars.ContextVar("latent_progress", default=False)


@contextmanager
def progress_enabled() -> Iterator[None]:
    """Show progress bars for large maps run inside this block."""
    token = _enabled.set(True)
    try:
        yield
    finally:
        _enabled.reset(token)


class RowProgress:
    """Counts of one map's rows; drawn as a bar when shown."""

    def __init__(self, name: str, total: int, bar: Any = None) -> None:
        self.name = name
        self.total = total
        self.counts = {"done": 0, "cached": 0, "failed": 0, "waiting": 0}
        self._bar = bar
        self._job = bar.add_task(f"map {name}", total=total, **self.counts) if bar else None
        self._lock = threading.Lock()

    @property
    def shown(self) -> bool:
        return self._bar is not None

    def done(self) -> None:
        self._count("done", 1, advance=1)

    def cached(self) -> None:
        self._count("cached", 1, advance=1)

    def failed(self) -> None:
        self._count("failed", 1, advance=1)

    def waiting(self, n: int) -> None:
        """`n` more (or, negative, fewer) rows waiting on a limit."""
        self._count("waiting", n, advance=0)

    def _count(self, what: str, n: int, *, advance: int) -> None:
        with self._lock:
            self.counts[what] += n
            if self._bar is not None:
                self._bar.update(self._job, advance=advance, **self.counts)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


def progress_for(name: str, total: int) -> RowProgress:
    """A row counter for a map of `total` rows, with a bar when enabled and the map is large."""
    if not _enabled.get() or total < MIN_ITEMS:
        return RowProgress(name, total)
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    bar = Progress(
        "[bold]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        "[cyan]{task.fields[cached]} cached[/]",
        "[red]{task.fields[failed]} failed[/]",
        "[yellow]{task.fields[waiting]} waiting on limits[/]",
        TimeRemainingColumn(),
        transient=False,
    )
    bar.start()
    return RowProgress(name, total, bar)
