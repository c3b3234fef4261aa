"""Where a run gets its project, and the wiring of the other packages to it.

latent-config finds the project; this module tells latent-cache (module naming, default
checkpoint directory and environment) and latent-observe (tracking URI, logger hook) about it.
A flow run also scopes its checkpoints to its project for its own context (see `_flow`), so
the process-wide defaults set here only serve code that runs outside any flow.
"""

from __future__ import annotations

import contextvars
import inspect
import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

from latent.cache import configure_checkpoints, set_module_namer
from latent.config import Project, current_run, find_project_root
from latent.observe import (
    configure_redaction,
    configure_tracking,
    set_logger_provider,
    share_writers,
    stable_tracking_env,
)
from latent.prefect._importpath import add_project_root
from latent.prefect._server import writer_dir

_configured: list[Project] = []  # the project the process is wired to (at most one)
_configure_lock = threading.Lock()

# `latent run --param k=v` hands overrides to the flow it runs, by flow name.
_overrides: contextvars.ContextVar[Mapping[str, Sequence[str] | Mapping[str, Any]] | None] = (
    contextvars.ContextVar("latent_param_overrides", default=None)
)


@lru_cache(maxsize=4096)
def project_module_name(filename: str) -> str | None:
    """``flows.answer.flow`` for ``<project>/flows/answer/flow.py``: the module name a file has
    in its project, whatever name it was imported under (a script's ``__main__``, a notebook's
    package path, `latent run`'s ``latent_flows.answer``). None outside a project.
    """
    path = Path(filename)
    if path.suffix != ".py":
        return None
    root = find_project_root(path)
    if root is None:
        return None
    try:
        parts = path.resolve().relative_to(root).with_suffix("").parts
    except ValueError:
        return None
    if parts and parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts) or None


# Cache keys and checkpoints name user code by its place in the project (see latent-cache's
# `set_module_namer`), so a flow run as a script, from a notebook or by `latent run` shares them.
set_module_namer(project_module_name)


def source_file(fn: Callable[..., Any]) -> str | None:
    """The file a user function was defined in, which helps find its project."""
    try:
        return inspect.getsourcefile(fn)
    except (TypeError, OSError):
        return None


def resolved_signature(fn: Callable[..., Any]) -> inspect.Signature:
    """`fn`'s signature with string annotations evaluated in `fn`'s own module.

    Prefect builds its parameter model from the wrapper's signature; the wrapper lives in another
    module, so `from __future__ import annotations` names like `pd.DataFrame` must be resolved here.
    """
    try:
        return inspect.signature(fn, eval_str=True)
    except Exception:  # an annotation that cannot be evaluated: keep it as text
        return inspect.signature(fn)


def optional_parameter(p: inspect.Parameter) -> inspect.Parameter:
    """`p` with default None and, if annotated, `X | None`: the catalog fills it when omitted."""
    annotation = p.annotation
    if annotation is not p.empty and not isinstance(annotation, str):
        annotation = annotation | None
    return p.replace(default=None, annotation=annotation)


def project_for(fn: Callable[..., Any]) -> Project:
    """The project of the active run, else the one found from the cwd or `fn`'s file."""
    run = current_run()
    if run is not None:
        return run.project
    return prepare(Project.discover(source_file=source_file(fn)))


def prepare(project: Project) -> Project:
    """Wire latent-cache and latent-observe to `project` (again only when the project changed).

    The wiring is the process's default (tests and notebooks that switch projects get rewired on
    the switch); a flow run also binds its own project's cache, checkpoints and tracking for its
    duration (`_flow._FlowCall`), so two projects can run at once in one process.
    """
    add_project_root(project.root)  # `from flows.common import x` in flows and workers
    if _configured and _configured[0] is project:
        return project
    with _configure_lock:
        settings = project.settings
        configure_checkpoints(environment=settings.environment, directory=project.cache_dir)
        configure_tracking(**tracking_settings(project))
        share_writers(writer_dir())  # MLflow imported once for all runs (`latent.observe._shared`)
        configure_redaction(patterns=settings.observe.secret_patterns)
        set_logger_provider(_prefect_run_logger)
        _configured[:] = [project]
    return project


def tracking_uri(project: Project) -> str:
    """The project's MLflow store, never the one another project's flow is pointing MLflow's
    trace exporter at this moment (it exports ``MLFLOW_TRACKING_URI`` while it does)."""
    with stable_tracking_env():
        return project.tracking_uri


def tracking_settings(project: Project) -> dict[str, Any]:
    """latent-observe's settings for `project` (`configure_tracking` / `tracking_for`)."""
    settings = project.settings
    return {
        "enabled": settings.mlflow.enabled,
        "tracking_uri": tracking_uri(project),
        "experiment_prefix": settings.mlflow.experiment_prefix,
        "environment": settings.environment,
        "artifact_location": project.artifact_location,
    }


def _prefect_run_logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger] | None:
    """Prefect's run logger when inside a Prefect run, so records show in Prefect's UI."""
    from prefect.context import FlowRunContext, TaskRunContext
    from prefect.logging import get_run_logger

    if TaskRunContext.get() is None and FlowRunContext.get() is None:
        return None
    try:
        return get_run_logger()
    except Exception:
        return None


def catalog_for(project: Project) -> Any:
    """The active run's catalog, or the shared catalog for a task called outside any flow."""
    run = current_run()
    if run is not None:
        return run.catalog
    return project.catalog("")


@contextmanager
def param_overrides(flow: str, overrides: Sequence[str] | Mapping[str, Any]) -> Iterator[None]:
    """Give `overrides` to the next run of `flow` in this context (used by `latent run`)."""
    token = _overrides.set({**(_overrides.get() or {}), flow: overrides})
    try:
        yield
    finally:
        _overrides.reset(token)


def overrides_for(flow: str) -> Sequence[str] | Mapping[str, Any] | None:
    return (_overrides.get() or {}).get(flow)
