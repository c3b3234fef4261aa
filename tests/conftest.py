"""Cross-package tests run Prefect flows: they share the session's Prefect server."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _uses_prefect_server(prefect_server: None) -> None:
    """Wait (once, bounded) for the session's Prefect server before any test here runs."""
