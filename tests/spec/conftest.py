"""Fixtures of the spec-example tests: a fresh project per test (see spec_project.py)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from spec_project import LATENT_TOML, LogRecords, SpecProject


@pytest.fixture
def project(new_project: Callable[[str], Path]) -> SpecProject:
    return SpecProject(new_project(LATENT_TOML))


@pytest.fixture
def log_records() -> Iterator[LogRecords]:
    import prefect  # noqa: F401  (Prefect configures its loggers on import: do it first)

    handler = LogRecords()
    saved = []
    for name in LogRecords.NAMES:
        lg = logging.getLogger(name)
        saved.append((lg, lg.level))
        lg.setLevel(logging.DEBUG)
        lg.addHandler(handler)
    yield handler
    for lg, level in saved:
        lg.removeHandler(handler)
        lg.setLevel(level)
