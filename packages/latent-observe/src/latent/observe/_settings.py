"""Tracking settings (process-wide defaults, or bound to one flow run) and tracking's warnings.

Whether tracking is on is decided once, by whoever composes Latent: latent-prefect reads
``[mlflow] enabled`` and ``LATENT_MLFLOW_ENABLED`` through latent-config and passes the result to
`configure_tracking(enabled=...)`. Used alone (``enabled`` not given), latent-observe reads
``LATENT_MLFLOW_ENABLED`` itself with latent-config's rules (``tests/test_settings_agree.py``):
``1/true/yes/on`` or ``0/false/no/off`` in any case, unset or empty means on, anything else is a
`SettingsError` naming the variable.

`configure_tracking` sets the process's defaults; `tracking_for` binds settings to a block (a
flow run, in a context variable), so two projects running at once in one process (threads,
asyncio) each record into their own store.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from latent.observe.errors import SettingsError

ENABLED_ENV = "LATENT_MLFLOW_ENABLED"
ARTIFACTS_ENV = "LATENT_MLFLOW_ARTIFACT_LOCATION"
#: Rows of a DataFrame logged as an MLflow table (`log_table`, task and flow outputs).
MAX_TABLE_ROWS = 10_000
_TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
_FALSE_WORDS = frozenset({"0", "false", "no", "off"})

_log = logging.getLogger("latent.observe")


@dataclass(frozen=True)
class TrackingSettings:
    """What `configure_tracking` set; read once when a flow run opens."""

    enabled: bool | None = None  # None: LATENT_MLFLOW_ENABLED decides (on when unset)
    tracking_uri: str | None = None
    experiment_prefix: str = ""
    environment: str | None = None
    connect_timeout_s: float = 3.0
    artifact_location: str | None = None
    max_table_rows: int = MAX_TABLE_ROWS


_settings = TrackingSettings()
_bound: ContextVar[TrackingSettings | None] = ContextVar("latent_tracking_settings", default=None)
_warnings: list[str] = []
_warnings_lock = threading.Lock()


def configure_tracking(
    *,
    enabled: bool | None = None,
    tracking_uri: str | None = None,
    experiment_prefix: str = "",
    environment: str | None = None,
    connect_timeout_s: float = 3.0,
    artifact_location: str | None = None,
    max_table_rows: int = MAX_TABLE_ROWS,
) -> None:
    """Set the process-wide MLflow defaults used by every later `flow_run`.

    `tracking_uri=None` means MLflow's own default (``MLFLOW_TRACKING_URI`` or its built-in).
    `enabled` is the caller's decision, environment included (latent-prefect passes latent.toml's
    and ``LATENT_MLFLOW_ENABLED``'s); None leaves it to ``LATENT_MLFLOW_ENABLED`` (on when unset).
    `artifact_location` (a directory or an fsspec/MLflow URL; ``LATENT_MLFLOW_ARTIFACT_LOCATION``
    wins) is where new experiments keep artifacts (tables, files); by default ``artifacts/``
    beside a local SQLite store, so nothing lands in ``./mlruns`` of the working directory.
    `max_table_rows` bounds the rows of each table logged.
    """
    global _settings
    _settings = TrackingSettings(
        enabled=enabled,
        tracking_uri=tracking_uri,
        experiment_prefix=experiment_prefix,
        environment=environment,
        connect_timeout_s=connect_timeout_s,
        artifact_location=artifact_location,
        max_table_rows=max_table_rows,
    )


@contextmanager
def tracking_for(settings: TrackingSettings) -> Iterator[TrackingSettings]:
    """Within this block (this thread or task and what it starts), `settings` instead of
    `configure_tracking`'s: a flow run of one project beside another project's in one process.
    `TrackingSettings` takes `configure_tracking`'s arguments."""
    token = _bound.set(settings)
    try:
        yield settings
    finally:
        _bound.reset(token)


# Held while MLflow's global tracking URI is switched to a store: `mlflow.set_tracking_uri`
# exports ``MLFLOW_TRACKING_URI`` for a moment (Latent puts it back), and a project's settings
# read that variable as the user's choice of store.
_tracking_env_lock = threading.Lock()


@contextmanager
def stable_tracking_env() -> Iterator[None]:
    """Within this block ``MLFLOW_TRACKING_URI`` is the user's, not a store Latent is pointing
    MLflow's trace exporter at in another thread: read a project's tracking URI inside it when
    flows of two projects may start at once in one process."""
    with _tracking_env_lock:
        yield


def current_settings() -> TrackingSettings:
    """The settings bound here by `tracking_for`, else `configure_tracking`'s."""
    bound = _bound.get()
    return bound if bound is not None else _settings


def artifact_location(settings: TrackingSettings | None = None) -> str | None:
    """Where new experiments keep artifacts: ``LATENT_MLFLOW_ARTIFACT_LOCATION`` > configured."""
    chosen = settings if settings is not None else current_settings()
    return os.environ.get(ARTIFACTS_ENV) or chosen.artifact_location


def tracking_enabled() -> bool:
    """Whether tracking is on: as configured, else as ``LATENT_MLFLOW_ENABLED`` says (on)."""
    settings = current_settings()
    if settings.enabled is not None:
        return settings.enabled
    flag = env_flag(ENABLED_ENV)
    return True if flag is None else flag


def env_flag(name: str) -> bool | None:
    """A boolean environment variable, by latent-config's rules: ``1/true/yes/on`` or
    ``0/false/no/off`` (any case, spaces ignored); None when unset or empty; else SettingsError."""
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return None
    flag = raw.strip().lower()
    if flag in _TRUE_WORDS | _FALSE_WORDS:
        return flag in _TRUE_WORDS
    raise SettingsError(
        f"{name}={raw!r} is not a boolean. Use 1/true/yes/on or 0/false/no/off, or unset it."
    )


def emit_warning(message: str) -> None:
    """Log a tracking warning and keep it for `tracking_warnings()`."""
    with _warnings_lock:
        _warnings.append(message)
    _log.warning(message)


def tracking_warnings() -> list[str]:
    """The tracking warnings emitted so far in this process, oldest first (for tests and CLIs)."""
    with _warnings_lock:
        return list(_warnings)
