"""What `@flow(...)` was given, and the checked configuration of one run of it.

Both without Prefect: `latent run` checks every flow's parameters, typed config and catalog
before Prefect is imported (a mistake costs a second, not Prefect's 1.5 s import), and
`@flow` inside `latent run` holds only this spec until then (`_deferred`).
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from latent.config import Project, RunConfig
from latent.prefect import _runtime
from latent.prefect.errors import FlowDefinitionError

__all__ = ["FlowSpec", "make_run", "make_spec"]


@dataclass(frozen=True)
class FlowSpec:
    """What `@flow(...)` was given."""

    name: str
    fn: Callable[..., Any]
    input: tuple[str, ...]
    output: tuple[str, ...]
    config_schema: type[BaseModel] | None


def make_spec(
    fn: Callable[..., Any],
    name: str,
    input: Sequence[str] | None,
    output: Sequence[str] | None,
    config_schema: type[BaseModel] | None,
) -> FlowSpec:
    if isinstance(input, str) or isinstance(output, str):
        raise FlowDefinitionError(
            f"@flow('{name}'): input= and output= take lists of dataset names, "
            f"e.g. input=['{input or output}']"
        )
    if config_schema is not None and not (
        isinstance(config_schema, type) and issubclass(config_schema, BaseModel)
    ):
        raise FlowDefinitionError(
            f"@flow('{name}'): config_schema must be a pydantic BaseModel class, "
            f"got {config_schema!r}"
        )
    inputs = tuple(input or ())
    n_params = len(inspect.signature(fn).parameters)
    if len(inputs) > n_params:
        warnings.warn(
            f"@flow('{name}'): {len(inputs)} input datasets but {fn.__name__}() takes "
            f"{n_params} parameter(s); inputs are passed positionally, one parameter each, so "
            f"{list(inputs[n_params:])} will not be loaded. Add parameters to receive them.",
            UserWarning,
            stacklevel=3,
        )
    return FlowSpec(name, fn, inputs, tuple(output or ()), config_schema)


def make_run(spec: FlowSpec, project: Project, *, nested: bool) -> RunConfig:
    """Parameters merged and validated before any task runs.

    A subflow defined beside its parent, with no `flows/<name>/` of its own, runs on the global
    parameters and the shared catalog; a top-level flow without its directory is an error that
    names the flows that exist (almost always a typo).
    """
    source = spec.name if not nested or project.has_flow(spec.name) else ""
    overrides = _runtime.overrides_for(spec.name)
    by_flow = {
        name: found
        for name in {*project.flow_names(), spec.name}
        if (found := _runtime.overrides_for(name))
    }
    if spec.config_schema is None:
        return RunConfig(
            spec.name,
            project.parameters(source, overrides),
            None,
            project,
            project.catalog(source),
            by_flow,
        )
    # What MLflow records and `params` reads: the validated values, defaults filled in.
    typed = project.typed_parameters(source, spec.config_schema, overrides, name=spec.name)
    return RunConfig(
        spec.name, typed.model_dump(), typed, project, project.catalog(source), by_flow
    )
