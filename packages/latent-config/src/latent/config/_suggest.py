"""Close-match hints ("did you mean ...") for error messages about unknown names."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return `` Did you mean 'x'?`` (or ``'x' or 'y'``) for the closest choices, else ``""``."""
    matches = close_matches(name, choices)
    if not matches:
        return ""
    return " Did you mean " + " or ".join(repr(m) for m in matches) + "?"


def close_matches(name: str, choices: Iterable[str]) -> list[str]:
    """Up to three choices that look like ``name`` (a typo's likely targets), best first."""
    return difflib.get_close_matches(name, sorted(choices), n=3, cutoff=0.6)


def listing(choices: Iterable[str]) -> str:
    """Render names for a message: ``'a', 'b'`` or ``(none)``."""
    items = sorted(choices)
    return ", ".join(repr(c) for c in items) if items else "(none)"
