"""Latent on Prefect 3: `@flow` and `@task` with typed config, a catalog, correct caching,
checkpoints and MLflow traces.

Everything a flow file needs is importable from here, including the results API (`log_metric`,
`log_metrics`, `log_table`, `log_artifact`, `log_dataset`) that records into the flow's MLflow
run. The names load on first use (PEP 562): `latent.prefect.cli` is a subpackage, and
`latent --help` must not pay for importing Prefect.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from latent.prefect import _importpath

__version__ = "0.1.0"

if TYPE_CHECKING:  # `flow` and `task` as type checkers see them: with their full signatures
    from latent.cache import checkpoint, clear_checkpoints
    from latent.config import get_config, params
    from latent.observe import (
        TaskExecutionError,
        get_flow_logger,
        log_artifact,
        log_dataset,
        log_metric,
        log_metrics,
        log_table,
        logger,
    )
    from latent.prefect._flow import LatentFlow, flow
    from latent.prefect._futures import CachedFuture, RowFuture
    from latent.prefect._task import LatentTask, task
    from prefect import unmapped

# public name -> module that defines it
# Modules that a flow file's usual imports (`flow`, `task`, `params`, `logger`, ...) need, none of
# which imports Prefect: `latent run` checks the configuration before Prefect is imported.
_LIGHT = ("latent.prefect._deferred", "latent.config", "latent.observe", "latent.cache")
_WHERE = {
    "CachedFuture": "latent.prefect._futures",
    "LatentFlow": "latent.prefect._flow",
    "LatentTask": "latent.prefect._task",
    "RowFuture": "latent.prefect._futures",
    "TaskExecutionError": "latent.observe",
    "checkpoint": "latent.cache",
    "clear_checkpoints": "latent.cache",
    "flow": "latent.prefect._deferred",
    "get_config": "latent.config",
    "get_flow_logger": "latent.observe",
    "log_artifact": "latent.observe",
    "log_dataset": "latent.observe",
    "log_metric": "latent.observe",
    "log_metrics": "latent.observe",
    "log_table": "latent.observe",
    "logger": "latent.observe",
    "params": "latent.config",
    "task": "latent.prefect._deferred",
    "unmapped": "latent.prefect._deferred",
}

__all__ = [
    "CachedFuture",
    "LatentFlow",
    "LatentTask",
    "RowFuture",
    "TaskExecutionError",
    "checkpoint",
    "clear_checkpoints",
    "flow",
    "get_config",
    "get_flow_logger",
    "log_artifact",
    "log_dataset",
    "log_metric",
    "log_metrics",
    "log_table",
    "logger",
    "params",
    "task",
    "unmapped",
]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'latent.prefect' has no attribute {name!r}")
    # A flow file run as a script, or a notebook under the project, then imports the project's
    # own modules (`from flows.common import x`) as under `latent run`.
    _importpath.add_project_of_main()
    # `_runtime` installs how latent-cache names project modules (cache keys depend on it).
    importlib.import_module("latent.prefect._runtime")
    if _WHERE[name] in _LIGHT:
        globals()[name] = getattr(importlib.import_module(_WHERE[name]), name)
        return globals()[name]
    # Any other name loads them all, as an eager import did (importing `_flow` and `_task`
    # also installs what they set up).
    for public, module in _WHERE.items():
        globals()[public] = getattr(importlib.import_module(module), public)
    return globals()[name]


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def _on_import() -> None:
    """Telemetry off unless the user chose otherwise, before Prefect reads its settings."""
    from latent.prefect import _startup

    _startup.quiet_defaults()


_on_import()
