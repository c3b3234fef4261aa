"""Fixtures of the latent-prefect tests: a tiny project on disk per test."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from prefect_project import LATENT_TOML, ProjectDir


@pytest.fixture
def project(new_project: Callable[[str], Path], prefect_server: None) -> ProjectDir:
    return ProjectDir(new_project(LATENT_TOML))
