"""Which environment this process runs in, and where its project's checkpoints live.

Order: :func:`configure_checkpoints` (latent-prefect calls it at flow start), else the
``LATENT_ENVIRONMENT`` variable, else ``environment`` in ``config/latent.toml`` found from the
current directory upwards, else production. Read on every checkpointed call (cheaply: the file
search is cached per directory, the file is re-parsed only when its mtime changes), so a
decision made after the decorated function was defined still applies.
"""

from __future__ import annotations

import contextvars
import os
import threading
import tomllib
from pathlib import Path

from latent.cache.errors import SettingsFileError

DEV_ENVIRONMENTS = frozenset({"dev", "development"})
SETTINGS_FILE = Path("config") / "latent.toml"

# Per flow run (context variable) before per process: (environment, directory).
_scoped: contextvars.ContextVar[tuple[str | None, str | None]] = contextvars.ContextVar(
    "latent_checkpoint_scope", default=(None, None)
)
_configured_environment: str | None = None
_configured_directory: str | None = None
# cwd -> the settings file found from it (or None); file path -> (mtime_ns, environment)
_found: dict[str, str | None] = {}
_parsed: dict[str, tuple[int, str | None]] = {}
_directories: dict[str, str] = {}  # cwd -> default checkpoint directory
_lock = threading.Lock()


def configure(
    *, environment: str | None = None, directory: str | os.PathLike[str] | None = None
) -> None:
    global _configured_environment, _configured_directory
    with _lock:
        if environment is not None:
            _configured_environment = environment
        if directory is not None:
            _configured_directory = os.path.abspath(directory)


def scope(
    *, environment: str | None, directory: str | os.PathLike[str] | None
) -> contextvars.Token[tuple[str | None, str | None]]:
    path = os.path.abspath(directory) if directory is not None else None
    return _scoped.set((environment, path))


def unscope(token: contextvars.Token[tuple[str | None, str | None]]) -> None:
    _scoped.reset(token)


def environment() -> str:
    scoped = _scoped.get()[0]
    if scoped is not None:
        return scoped
    if _configured_environment is not None:
        return _configured_environment
    env = os.environ.get("LATENT_ENVIRONMENT")
    if env:
        return env
    settings = _settings_file()
    if settings is not None:
        value = _environment_in(settings)
        if value:
            return value
    return "production"


def checkpoint_directory() -> str:
    """Configured directory, else ``<project>/.latent/cache``, else ``./.latent/cache``."""
    scoped = _scoped.get()[1]
    if scoped is not None:
        return scoped
    if _configured_directory is not None:
        return _configured_directory
    cwd = os.getcwd()
    found = _directories.get(cwd)
    if found is None:
        settings = _settings_file()
        root = Path(settings).parent.parent if settings is not None else Path(cwd)
        found = _directories[cwd] = str(root / ".latent" / "cache")
    return found


def _settings_file() -> str | None:
    cwd = os.getcwd()
    if cwd in _found:
        return _found[cwd]
    found = None
    for folder in (Path(cwd), *Path(cwd).parents):
        candidate = folder / SETTINGS_FILE
        if candidate.is_file():
            found = str(candidate)
            break
    _found[cwd] = found
    return found


def _environment_in(path: str) -> str | None:
    try:
        mtime = os.stat(path).st_mtime_ns
    except OSError:
        return None
    cached = _parsed.get(path)
    if cached is not None and cached[0] == mtime:
        return cached[1]
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsFileError(path, str(exc)) from exc
    value = data.get("environment")
    env = str(value) if value is not None else None
    _parsed[path] = (mtime, env)
    return env
