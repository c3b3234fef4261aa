"""Fixtures of the latent-prefect tests: a tiny project on disk per test.

`project_dir` is the helper module all suites share (`tests/project_dir.py`; the root conftest
puts `tests/` on the import path).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from project_dir import LATENT_TOML, ProjectDir


@pytest.fixture
def project(new_project: Callable[[str], Path], prefect_server: None) -> ProjectDir:
    return ProjectDir(new_project(LATENT_TOML))
