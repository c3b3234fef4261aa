"""Latent on Prefect 3: `@flow` and `@task` with typed config, a catalog, correct caching,
checkpoints and MLflow traces.

Everything a flow file needs is importable from here.
"""

from latent.cache import checkpoint, clear_checkpoints
from latent.config import get_config, params
from latent.observe import TaskExecutionError, get_flow_logger, logger
from latent.prefect._flow import LatentFlow, flow
from latent.prefect._futures import CachedFuture
from latent.prefect._task import LatentTask, task
from prefect import unmapped

__all__ = [
    "CachedFuture",
    "LatentFlow",
    "LatentTask",
    "TaskExecutionError",
    "checkpoint",
    "clear_checkpoints",
    "flow",
    "get_config",
    "get_flow_logger",
    "logger",
    "params",
    "task",
    "unmapped",
]
