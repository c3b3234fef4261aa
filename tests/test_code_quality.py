"""The repository's own rules, enforced where CI can see them: ruff clean and fully typed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "packages").glob("*/src"))


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )


def test_ruff_finds_nothing_to_fix() -> None:
    lint = _run("ruff", "check", ".")
    assert lint.returncode == 0, lint.stdout + lint.stderr
    formatting = _run("ruff", "format", "--check", ".")
    assert formatting.returncode == 0, formatting.stdout + formatting.stderr


@pytest.mark.slow
def test_mypy_accepts_every_package() -> None:
    assert len(SOURCES) == 4, SOURCES
    typed = _run("mypy", *SOURCES)
    assert typed.returncode == 0, typed.stdout + typed.stderr


def test_every_package_ships_py_typed() -> None:
    packages = [p.parent for p in ROOT.glob("packages/*/src/latent/*/__init__.py")]
    assert len(packages) >= 5, packages
    missing = [str(p.relative_to(ROOT)) for p in packages if not (p / "py.typed").is_file()]
    assert missing == []
