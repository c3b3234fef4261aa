"""Fixtures of the spec-example tests: a fresh project per test (see spec_project.py)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from spec_project import LATENT_TOML, LogRecords, SpecProject

from latent.registry import TaskRegistry


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SpecProject]:
    root = tmp_path / "proj"
    (root / "config").mkdir(parents=True)
    (root / "config" / "latent.toml").write_text(LATENT_TOML)
    (root / "config" / "global.yaml").write_text("")
    (root / "flows").mkdir()
    (root / "data").mkdir()
    monkeypatch.chdir(root)
    for var in ("LATENT_ENVIRONMENT", "LATENT_PROJECT_ROOT", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(var, raising=False)
    TaskRegistry.clear()
    yield SpecProject(root)
    TaskRegistry.clear()


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
