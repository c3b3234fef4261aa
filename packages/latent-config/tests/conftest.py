"""Shared fixtures: tiny real projects written into tmp_path, and a clean environment."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

ProjectFactory = Callable[..., Path]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests must not see the developer's Latent/MLflow environment."""
    for name in (
        "LATENT_PROJECT_ROOT",
        "LATENT_ENVIRONMENT",
        "LATENT_MLFLOW_ENABLED",
        "MLFLOW_TRACKING_URI",
    ):
        monkeypatch.delenv(name, raising=False)


def _write_files(root: Path, files: dict[str, str]) -> Path:
    """Write ``{relative path: text}`` under root (text is dedented); return root."""
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return root


@pytest.fixture
def make_project(tmp_path: Path) -> ProjectFactory:
    """Build a configured project (config/latent.toml present) from a dict of files."""

    def make(files: dict[str, str] | None = None, name: str = "proj") -> Path:
        root = tmp_path / name
        defaults = {"config/latent.toml": 'environment = "dev"\n'}
        return _write_files(root, {**defaults, **(files or {})})

    return make


@pytest.fixture
def write_tree() -> Callable[[Path, dict[str, str]], Path]:
    """Write ``{relative path: text}`` under a root (for unconfigured directories)."""
    return _write_files
