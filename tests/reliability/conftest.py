"""Fixtures of the reliability suite: a fresh project per test (see reliability_project.py)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from reliability_project import LATENT_TOML, ProjectDir


@pytest.fixture
def project(new_project: Callable[[str], Path]) -> ProjectDir:
    return ProjectDir(new_project(LATENT_TOML))


@pytest.fixture(scope="session")
def prefect_api_url(prefect_server: None) -> str:
    """The URL of this session's Prefect server, for flow processes the tests start.

    Every new process that runs a flow would otherwise start its own embedded server (10-60 s on
    a busy 2-core machine). The child processes share the session's server (root conftest): a
    real Prefect API over HTTP with its SQLite database, so nothing of Prefect is faked. Without
    one (PREFECT_API_URL set by the caller to nothing), fall back to Prefect's embedded server.
    """
    if os.environ.get("PREFECT_API_URL"):
        return os.environ["PREFECT_API_URL"]
    from prefect.server.api.server import SubprocessASGIServer

    server = SubprocessASGIServer()
    server.start()
    return str(server.api_url)
