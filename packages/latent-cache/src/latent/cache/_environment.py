"""Which environment this process runs in, and where its project's checkpoints live.

Order: :func:`checkpoints_for` (latent-prefect, per flow run), else :func:`configure_checkpoints`,
else what the project says: the ``LATENT_ENVIRONMENT`` variable, else ``environment`` in
``config/latent.toml``, else production. Read on every checkpointed call (cheaply: the file
search is cached per directory, the file is re-parsed only when its mtime changes), so a
decision made after the decorated function was defined still applies.

Used alone, latent-cache reads the project's settings itself, with latent-config's rules (it
cannot import latent-config; ``tests/test_settings_agree.py`` holds the two to the same answers):
the project is ``LATENT_PROJECT_ROOT``, else the nearest ancestor of the working directory with
``config/latent.toml``, else the working directory; ``LATENT_ENVIRONMENT`` and ``environment``
are dev, development or production in any case (an empty variable is unset, anything else an
error naming it); checkpoints live in ``<[paths] latent_dir>/cache`` (``.latent/cache``).
"""

from __future__ import annotations

import contextvars
import os
import threading
import tomllib
from pathlib import Path
from typing import Any

from latent.cache.errors import SettingsError, SettingsFileError

DEV_ENVIRONMENTS = frozenset({"dev", "development"})
ENVIRONMENTS = ("dev", "development", "production")
SETTINGS_FILE = Path("config") / "latent.toml"

# Per flow run (context variable) before per process: (environment, directory).
_scoped: contextvars.ContextVar[tuple[str | None, str | None]] = contextvars.ContextVar(
    "latent_checkpoint_scope", default=(None, None)
)
_configured_environment: str | None = None
_configured_directory: str | None = None
# (cwd, LATENT_PROJECT_ROOT) -> (project root, its settings file or None)
_found: dict[tuple[str, str], tuple[str, str | None]] = {}
_parsed: dict[str, tuple[int, dict[str, Any]]] = {}  # file -> (mtime_ns, its TOML)
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
    env = environment_variable()
    if env is not None:
        return env
    _, settings = _project()
    if settings is not None:
        value = _environment_in(settings)
        if value is not None:
            return value
    return "production"


def environment_variable() -> str | None:
    """``LATENT_ENVIRONMENT`` lower-cased; None when unset or empty; else SettingsError."""
    raw = os.environ.get("LATENT_ENVIRONMENT")
    if raw is None or not raw.strip():
        return None
    value = raw.strip().lower()
    if value not in ENVIRONMENTS:
        raise SettingsError(
            f"LATENT_ENVIRONMENT={raw!r} is not one of 'dev', 'development', 'production'. "
            "Set it to one of these or unset it."
        )
    return value


def checkpoint_directory() -> str:
    """Configured directory, else ``<project>/<[paths] latent_dir>/cache``."""
    scoped = _scoped.get()[1]
    if scoped is not None:
        return scoped
    if _configured_directory is not None:
        return _configured_directory
    root, settings = _project()
    latent_dir = ".latent"
    if settings is not None:
        paths = _toml(settings).get("paths")
        if isinstance(paths, dict) and isinstance(paths.get("latent_dir"), str):
            latent_dir = paths["latent_dir"]
    return os.path.join(root, os.path.expanduser(latent_dir), "cache")


def _project() -> tuple[str, str | None]:
    """The project root and its settings file (None when it has none), as latent-config finds
    them without a flow's source file to go by."""
    cwd = os.getcwd()
    env_root = os.environ.get("LATENT_PROJECT_ROOT") or ""
    key = (cwd, env_root)
    found = _found.get(key)
    if found is not None:
        return found
    if env_root:
        root = Path(cwd, os.path.expanduser(env_root)).resolve()
        candidate = root / SETTINGS_FILE
        found = (str(root), str(candidate) if candidate.is_file() else None)
    else:
        found = (cwd, None)
        for folder in (Path(cwd).resolve(), *Path(cwd).resolve().parents):
            candidate = folder / SETTINGS_FILE
            if candidate.is_file():
                found = (str(folder), str(candidate))
                break
    _found[key] = found
    return found


def _toml(path: str) -> dict[str, Any]:
    try:
        mtime = os.stat(path).st_mtime_ns
    except OSError:
        return {}
    cached = _parsed.get(path)
    if cached is not None and cached[0] == mtime:
        return cached[1]
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsFileError(path, str(exc)) from exc
    _parsed[path] = (mtime, data)
    return data


def _environment_in(path: str) -> str | None:
    value = _toml(path).get("environment")
    if value is None:
        return None
    text = str(value).strip().lower()
    if text not in ENVIRONMENTS:
        raise SettingsFileError(
            path, f"environment = {value!r} is not one of 'dev', 'development', 'production'"
        )
    return text
