"""A Rich progress bar for large `.map` calls, shown when `latent run` asks for one.

The bar advances as mapped calls are answered from the cache or finish (the throttle waits on the
oldest run in flight, so finished runs are seen in order). With a bar shown, `.map` waits for its
last runs before returning, so that the bar ends at the truth.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterable, Iterator
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


def progress_callback(name: str, total: int) -> Callable[..., None]:
    """`advance(n)`; `advance(0, done=True, in_flight=futures)` closes the bar."""
    if not _enabled.get() or total < MIN_ITEMS:
        return _noop
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    bar = Progress(
        "[bold]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        transient=False,
    )
    bar.start()
    job = bar.add_task(f"map {name}", total=total)

    def advance(n: int, *, done: bool = False, in_flight: Iterable[Any] = ()) -> None:
        if n:
            bar.advance(job, n)
        if done:
            for future in in_flight:  # only when a bar is shown: finish honestly, then close
                future.wait()
                bar.advance(job, 1)
            bar.stop()

    return advance


def _noop(n: int, *, done: bool = False, in_flight: Iterable[Any] = ()) -> None:
    return None
