"""Warnings of one kind shown once per process, with a count of the rest at exit.

A fault that hits every entry (a full disk, a damaged directory) would otherwise print one
warning per task or per row: thousands of lines that hide the one that matters.
"""

from __future__ import annotations

import atexit
import contextlib
import sys
import threading
import warnings

_counts: dict[str, int] = {}
_first: dict[str, str] = {}
_lock = threading.Lock()


def warn_limited(kind: str, message: str, category: type[Warning], stacklevel: int = 2) -> None:
    """Warn ``message`` the first time ``kind`` is seen in this process; count later ones."""
    with _lock:
        seen = kind in _counts
        _counts[kind] = _counts.get(kind, 0) + 1
        if not seen:
            _first[kind] = message
    if not seen:
        warnings.warn(
            f"{message} (Further warnings of this kind are counted and reported at exit.)",
            category,
            stacklevel=stacklevel + 1,
        )


def suppressed() -> dict[str, int]:
    """How many warnings of each kind were not shown (for tests and summaries)."""
    with _lock:
        return {kind: count - 1 for kind, count in _counts.items() if count > 1}


def _report() -> None:
    # Straight to stderr: at exit, logging handlers (Prefect's, pytest's) may be closed already.
    for kind, count in suppressed().items():
        with contextlib.suppress(Exception):
            print(
                f"{count} more warnings like this one were not shown: {_first[kind]}",
                file=sys.stderr,
            )


atexit.register(_report)
