"""Fixtures of the latent-prefect tests: a tiny project on disk per test."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from prefect_project import LATENT_TOML, ProjectDir

from latent.registry import TaskRegistry


@pytest.fixture
def project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefect_server: None
) -> Iterator[ProjectDir]:
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
    yield ProjectDir(root)
    TaskRegistry.clear()
