"""Fixtures of the reliability suite: a fresh project per test (see reliability_project.py)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from reliability_project import LATENT_TOML, ProjectDir

from latent.registry import TaskRegistry


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ProjectDir]:
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


@pytest.fixture(scope="session")
def prefect_api_url() -> str:
    """The URL of this session's Prefect server, for flow processes the tests start.

    Every new process that runs a flow would otherwise start its own embedded server (10-60 s on
    a busy 2-core machine). The child processes share the one that in-process runs use: a real
    Prefect API over HTTP with its SQLite database, so nothing of Prefect is faked.
    """
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()
    server.start()
    return str(server.api_url)
