"""Shared fixtures for latent-cache tests: subprocess runners, module loaders, environments."""

from __future__ import annotations

import importlib.util
import itertools
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

try:  # the workspace venv may predate the package's modules; make the source importable
    import latent.cache  # noqa: F401
except ImportError:
    sys.path.insert(0, str(SRC))

from latent.cache import _environment  # noqa: E402

_counter = itertools.count()


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test starts in production with nothing configured, as a fresh process would."""
    monkeypatch.delenv("LATENT_ENVIRONMENT", raising=False)
    monkeypatch.setattr(_environment, "_configured_environment", None)
    monkeypatch.setattr(_environment, "_configured_directory", None)
    monkeypatch.delenv("LATENT_PROJECT_ROOT", raising=False)
    _environment._found.clear()
    yield
    _environment._found.clear()


@pytest.fixture
def dev(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LATENT_ENVIRONMENT", "dev")


def child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(SRC), extra.pop("PYTHONPATH", ""), env.get("PYTHONPATH", "")) if p
    )
    env.update(extra)
    return env


@pytest.fixture(name="child_env")
def child_env_fixture() -> Callable[..., dict[str, str]]:
    """Environment for a child interpreter that can import this package's source."""
    return child_env


@pytest.fixture
def run_python() -> Callable[..., subprocess.CompletedProcess[str]]:
    """Run a Python snippet in a fresh interpreter; returns the completed process."""

    def run(
        code: str, *args: str, cwd: Path | None = None, check: bool = True, **env: str
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code), *args],
            capture_output=True,
            text=True,
            cwd=cwd,
            env=child_env(**env),
            timeout=120,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"child failed ({proc.returncode}):\n{proc.stderr}")
        return proc

    return run


@pytest.fixture
def load_module(tmp_path: Path) -> Callable[[str, str], ModuleType]:
    """Write ``source`` to a fresh file and import it under module name ``name``.

    Each call uses a new file, so the same module name can be loaded in several versions, as a
    user's edited file would be in successive runs.
    """

    def load(source: str, name: str = "userflow") -> ModuleType:
        folder = tmp_path / f"v{next(_counter)}"
        folder.mkdir()
        path = folder / f"{name}.py"
        path.write_text(textwrap.dedent(source))
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        finally:
            del sys.modules[name]
        return module

    return load
