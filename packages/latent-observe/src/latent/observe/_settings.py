"""Process-wide tracking settings and the warnings tracking has emitted."""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass

ENABLED_ENV = "LATENT_MLFLOW_ENABLED"
ARTIFACTS_ENV = "LATENT_MLFLOW_ARTIFACT_LOCATION"
#: Rows of a DataFrame logged as an MLflow table (`log_table`, task and flow outputs).
MAX_TABLE_ROWS = 10_000
_FALSE_WORDS = frozenset({"0", "false", "no", "off"})

_log = logging.getLogger("latent.observe")


@dataclass(frozen=True)
class TrackingSettings:
    """What `configure_tracking` set; read once when a flow run opens."""

    enabled: bool = True
    tracking_uri: str | None = None
    experiment_prefix: str = ""
    environment: str | None = None
    connect_timeout_s: float = 3.0
    artifact_location: str | None = None
    max_table_rows: int = MAX_TABLE_ROWS


_settings = TrackingSettings()
_warnings: list[str] = []
_warnings_lock = threading.Lock()


def configure_tracking(
    *,
    enabled: bool = True,
    tracking_uri: str | None = None,
    experiment_prefix: str = "",
    environment: str | None = None,
    connect_timeout_s: float = 3.0,
    artifact_location: str | None = None,
    max_table_rows: int = MAX_TABLE_ROWS,
) -> None:
    """Set the process-wide MLflow defaults used by every later `flow_run`.

    `tracking_uri=None` means MLflow's own default (``MLFLOW_TRACKING_URI`` or its built-in).
    The environment variable ``LATENT_MLFLOW_ENABLED=0`` disables tracking whatever is set here.
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


def current_settings() -> TrackingSettings:
    return _settings


def artifact_location() -> str | None:
    """Where new experiments keep artifacts: ``LATENT_MLFLOW_ARTIFACT_LOCATION`` > configured."""
    return os.environ.get(ARTIFACTS_ENV) or _settings.artifact_location


def tracking_enabled() -> bool:
    """Whether tracking is on: configured so and not switched off by ``LATENT_MLFLOW_ENABLED``."""
    flag = os.environ.get(ENABLED_ENV, "").strip().lower()
    return _settings.enabled and flag not in _FALSE_WORDS


def emit_warning(message: str) -> None:
    """Log a tracking warning and keep it for `tracking_warnings()`."""
    with _warnings_lock:
        _warnings.append(message)
    _log.warning(message)


def tracking_warnings() -> list[str]:
    """The tracking warnings emitted so far in this process, oldest first (for tests and CLIs)."""
    with _warnings_lock:
        return list(_warnings)
