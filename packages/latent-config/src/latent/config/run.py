"""What one flow run sees (``RunConfig``), and binding it to the current context.

The active run lives in a ``contextvars.ContextVar``: two flows running in two threads (or two
asyncio tasks) each see their own parameters, and a subflow's binding is undone when it ends.
Note that a plain ``threading.Thread`` starts with an empty context; runners that want the run
visible in worker threads copy the context (Prefect's task runners do).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from latent.config.catalog import Catalog
from latent.config.errors import NoActiveFlowError
from latent.config.project import Project

__all__ = ["RunConfig", "bind_run", "current_run", "get_config", "track_param_reads"]

_current: ContextVar[RunConfig | None] = ContextVar("latent_config_run", default=None)
_read_scopes: ContextVar[tuple[set[str], ...]] = ContextVar("latent_config_reads", default=())


@dataclass(frozen=True)
class RunConfig:
    """The configuration of one flow run: merged parameters, typed model, project, catalog.

    With a schema, ``parameters`` are the validated values, defaults filled in: what the run
    uses and what MLflow records. ``overrides_by_flow`` are the overrides of the whole command
    (``Project.scope_overrides``), so ``params.get("other_flow.key")`` sees them too.
    """

    flow: str
    parameters: dict[str, Any]
    typed: BaseModel | None
    project: Project
    catalog: Catalog
    overrides_by_flow: Mapping[str, Mapping[str, Any] | Sequence[str]] = field(default_factory=dict)

    @classmethod
    def load(
        cls,
        flow: str,
        *,
        project: Project | None = None,
        overrides: Mapping[str, Any] | Sequence[str] | None = None,
        schema: type[BaseModel] | None = None,
        source_file: str | Path | None = None,
        overrides_by_flow: Mapping[str, Mapping[str, Any] | Sequence[str]] | None = None,
    ) -> RunConfig:
        """Discover the project (unless given), merge parameters, validate, build the catalog.

        Raises FlowNotFoundError, ConfigFileError or ConfigValidationError (UnknownParameterError
        for a key the schema has no field for) before any work runs.
        """
        project = project or Project.discover(source_file=source_file)
        typed = None
        if schema is None:
            parameters = project.parameters(flow, overrides)
        else:
            typed = project.typed_parameters(flow, schema, overrides)
            parameters = typed.model_dump()
        return cls(
            flow, parameters, typed, project, project.catalog(flow), dict(overrides_by_flow or {})
        )


@contextmanager
def bind_run(run: RunConfig) -> Iterator[RunConfig]:
    """Make ``run`` the active run in this context; the previous one is restored on exit."""
    token = _current.set(run)
    try:
        yield run
    finally:
        _current.reset(token)


def current_run() -> RunConfig | None:
    """The active run in this context, or None."""
    return _current.get()


def require_run(what: str) -> RunConfig:
    """The active run, or NoActiveFlowError explaining how to get one."""
    run = _current.get()
    if run is None:
        raise NoActiveFlowError(
            f"{what} used while no Latent flow is active. Use it inside a function decorated "
            "with @flow (or a task it calls); in a script or test, bind a run first: "
            "`with bind_run(RunConfig.load('<flow>')): ...`."
        )
    return run


def get_config() -> dict[str, Any]:
    """``{"parameters": ..., "catalog": ...}`` of the active run (catalog as plain dicts)."""
    run = require_run("get_config()")
    for key in run.parameters:  # whoever holds the whole dict may read any key
        record_read(key)
    return {"parameters": run.parameters, "catalog": run.catalog.to_dict()}


@contextmanager
def track_param_reads() -> Iterator[set[str]]:
    """Collect the parameter keys read through ``params`` while the block runs.

    Top-level keys for attribute/item/``get`` access (``"batch_size"``), ``"flow.key"`` for a
    cross-flow ``get``. Scopes nest: a read is added to every active scope.
    """
    reads: set[str] = set()
    token = _read_scopes.set((*_read_scopes.get(), reads))
    try:
        yield reads
    finally:
        _read_scopes.reset(token)


def record_read(key: str) -> None:
    """Add ``key`` to every active ``track_param_reads`` scope."""
    for scope in _read_scopes.get():
        scope.add(key)
