"""``params``: one importable object that reads the active run's parameters.

Attribute and item access read this flow's top-level keys (the typed model's values, defaults
included, when the flow has a ``config_schema``). Only ``params.get("other_flow.key")`` reaches
into another flow, as the spec's Note says. Every read is reported to ``track_param_reads`` so
latent-prefect can invalidate exactly the tasks that read a changed parameter.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

from latent.config._suggest import did_you_mean, listing
from latent.config.errors import MissingParameterError, MissingParameterKeyError
from latent.config.run import RunConfig, current_run, record_read, require_run

__all__ = ["Params", "params"]

_MISSING: Any = object()


def _lookup(run: RunConfig, key: str) -> Any:
    """This flow's value for a top-level key, or _MISSING."""
    typed = run.typed
    if typed is not None and key in type(typed).model_fields:
        return getattr(typed, key)
    value = run.parameters.get(key, _MISSING)
    if value is not _MISSING or typed is None or key.startswith("_"):
        return value
    # Properties and methods of the typed model (e.g. a computed value) read like fields.
    return getattr(typed, key, _MISSING)


def _all_values(run: RunConfig) -> dict[str, Any]:
    if run.typed is None:
        return dict(run.parameters)
    return {**run.parameters, **run.typed.model_dump()}


def _missing_message(run: RunConfig, key: str) -> str:
    keys = list(_all_values(run))
    hint = did_you_mean(key, keys)
    cross = ""
    if run.project.has_flow(key) or "." in key:
        cross = " To read another flow's parameter use params.get('other_flow.key', default)."
    return (
        f"Flow {run.flow!r} has no parameter {key!r}. Its parameters: {listing(keys)}.{hint}"
        f"{cross} Add {key!r} to flows/{run.flow}/parameters.yaml or config/global.yaml, "
        f"or use params.get({key!r}, default)."
    )


class Params:
    """Read-only view of the active run's parameters (see the module docstring)."""

    __slots__ = ()

    def __getattr__(self, key: str) -> Any:
        if key.startswith("__") and key.endswith("__"):
            raise AttributeError(key)  # keep copy/pickle/inspect protocols working
        run = require_run(f"params.{key}")
        record_read(key)
        value = _lookup(run, key)
        if value is _MISSING:
            raise MissingParameterError(_missing_message(run, key))
        return value

    def __getitem__(self, key: str) -> Any:
        run = require_run(f"params[{key!r}]")
        record_read(key)
        value = _lookup(run, key)
        if value is _MISSING:
            raise MissingParameterKeyError(_missing_message(run, key))
        return value

    def get(self, key: str, default: Any = None) -> Any:
        """This flow's ``key``, or ``other_flow.key`` (nested ``flow.a.b`` too); else default."""
        run = require_run(f"params.get({key!r})")
        record_read(key)
        value = _lookup(run, key)
        if value is not _MISSING:
            return value
        flow, dot, rest = key.partition(".")
        if not dot:
            return default
        values = (
            run.parameters
            if flow == run.flow
            else run.project.other_flow_parameters(flow, run.overrides_by_flow.get(flow))
        )
        if values is None:
            return default
        node: Any = values
        for part in rest.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        # Another flow's values are cached per process: hand out a copy, never the cache.
        return copy.deepcopy(node)

    def __contains__(self, key: object) -> bool:
        run = require_run("`in params`")
        if not isinstance(key, str):
            return False
        record_read(key)
        return _lookup(run, key) is not _MISSING

    def to_dict(self) -> dict[str, Any]:
        """Every parameter as a plain dict (typed values and defaults when typed)."""
        run = require_run("params.to_dict()")
        values = _all_values(run)
        for key in values:
            record_read(key)
        return values

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_dict())

    def __len__(self) -> int:
        return len(self.to_dict())

    def __dir__(self) -> list[str]:
        run = current_run()
        keys = list(_all_values(run)) if run is not None else []
        return sorted({*object.__dir__(self), *keys})

    def __setattr__(self, key: str, value: Any) -> None:
        raise AttributeError(
            f"params is read-only (tried to set {key!r}). Change parameters.yaml, or pass an "
            f"override such as '{key}=...' when starting the run."
        )

    def __repr__(self) -> str:
        run = current_run()
        if run is None:
            return "<params: no active flow>"
        return f"<params of flow {run.flow!r}: {_all_values(run)!r}>"

    def __reduce__(self) -> str:
        # Pickling (e.g. shipping a task to a worker) must yield the module-level singleton.
        return "params"


params = Params()
