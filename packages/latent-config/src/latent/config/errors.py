"""Every error latent.config raises.

Each message says what happened, where (file and line, key, flow or dataset) and how to fix it,
so a user can act on it without reading Latent's source.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "ConfigFileError",
    "ConfigValidationError",
    "DatasetError",
    "DatasetNotFoundError",
    "FlowNotFoundError",
    "LatentConfigError",
    "NoActiveFlowError",
    "ParameterOverrideError",
    "UnknownDatasetTypeError",
    "UnknownParameterError",
]


class LatentConfigError(Exception):
    """Base class of every error raised by latent.config."""


class ConfigFileError(LatentConfigError):
    """A configuration file (or the environment standing in for one) is malformed.

    Raised for YAML/TOML syntax errors (with the line), an unknown key in ``config/latent.toml``,
    a catalog entry without ``type``/``filepath``, a file whose top level is not a mapping, or a
    ``${env:NAME}`` reference to an unset variable without a default.
    """


class UnknownDatasetTypeError(ConfigFileError):
    """A catalog entry names a dataset ``type`` that is not registered; lists the known ones."""


class FlowNotFoundError(LatentConfigError, LookupError):
    """A flow has no directory under ``flows/``; lists the flows that exist."""


class ConfigValidationError(LatentConfigError, ValueError):
    """Merged parameters do not satisfy the flow's ``config_schema``.

    The message starts ``Configuration validation failed for flow '<flow>':`` followed by one
    line per problem, ``  <dotted.field>: <pydantic message>``. ``errors`` holds the same
    problems as ``(dotted_field, message)`` pairs.
    """

    def __init__(self, flow: str, errors: list[tuple[str, str]]) -> None:
        self.flow = flow
        self.errors = errors
        lines = [f"Configuration validation failed for flow '{flow}':"]
        lines += [f"  {field}: {message}" for field, message in errors]
        super().__init__("\n".join(lines))

    def __reduce__(self) -> tuple[type[ConfigValidationError], tuple[str, list[tuple[str, str]]]]:
        # Errors cross process boundaries (Prefect results, Dask workers): keep them picklable.
        return (type(self), (self.flow, self.errors))


class UnknownParameterError(ConfigValidationError):
    """A parameter key that the flow's ``config_schema`` has no field for (a typo, usually).

    Raised before the flow starts, for a key in ``flows/<flow>/parameters.yaml`` (with its line),
    a key of ``config/global.yaml`` under a field the schema declares, or an override. Each
    problem names the nearest field. A schema that should take any key says so with
    ``model_config = ConfigDict(extra="allow")``.
    """

    def __init__(self, flow: str, errors: list[tuple[str, str]], schema: str = "") -> None:
        self.schema = schema
        super().__init__(flow, errors)
        owner = schema or "the schema"
        self.args = (
            f"{self.args[0]}\nFix or remove these keys, or let {owner} keep unknown keys: "
            'model_config = ConfigDict(extra="allow").',
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.flow, self.errors, self.schema))


class ParameterOverrideError(LatentConfigError, ValueError):
    """A run-time override (``key.sub=value``) is malformed or cannot be applied."""


class MissingParameterError(LatentConfigError, AttributeError):
    """``params.name`` for a key the run's parameters do not have (the message names the files
    searched). A configuration mistake: never retried."""


class MissingParameterKeyError(LatentConfigError, KeyError):
    """``params["name"]`` for a key the run's parameters do not have; see
    :class:`MissingParameterError`."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class DatasetError(LatentConfigError):
    """Loading or saving a dataset failed, or its path is not allowed (escapes the project)."""


class DatasetNotFoundError(DatasetError, LookupError):
    """A dataset name is in no catalog and has no default file; lists close matches."""


class NoActiveFlowError(LatentConfigError, RuntimeError):
    """``params`` or ``get_config()`` was used while no flow run is bound."""
