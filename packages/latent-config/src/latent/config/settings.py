"""Project settings from ``config/latent.toml``, validated by Pydantic.

Unknown keys are rejected (a typo such as ``expiry`` for ``expiration`` would otherwise be
silently ignored). Two environment variables override the file: ``LATENT_ENVIRONMENT`` and
``LATENT_MLFLOW_ENABLED``; ``MLFLOW_TRACKING_URI`` is honoured by ``Project.tracking_uri``.

latent-cache (``LATENT_ENVIRONMENT``, ``environment``) and latent-observe
(``LATENT_MLFLOW_ENABLED``) read the same settings when used alone; they cannot import this
module, so each keeps a copy of the rules below, and ``tests/test_settings_agree.py`` feeds the
same inputs to all three: a boolean variable is ``1/true/yes/on`` or ``0/false/no/off`` in any
case, unset or empty means "not set", anything else is an error naming the variable.
"""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from latent.config._files import read_toml
from latent.config._suggest import did_you_mean
from latent.config.errors import ConfigFileError

__all__ = [
    "CacheSettings",
    "MlflowSettings",
    "ObserveSettings",
    "PathsSettings",
    "PrefectSettings",
    "Settings",
    "TaskRunnerSettings",
    "parse_duration",
]

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(w|d|h|m|s)", re.IGNORECASE)
_DURATION_FULL = re.compile(r"\s*(?:\d+(?:\.\d+)?\s*[wdhms]\s*)+", re.IGNORECASE)
_UNITS = {"w": "weeks", "d": "days", "h": "hours", "m": "minutes", "s": "seconds"}
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})
_ENVIRONMENTS = ("dev", "development", "production")


def parse_duration(value: Any) -> Any:
    """Turn ``3600`` (seconds), ``"7d"``, ``"12h"``, ``"30m"`` or ``"1d12h"`` into a timedelta.

    Anything else is returned unchanged for Pydantic to parse (a timedelta, ``"P7D"``).
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return timedelta(seconds=value)
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return timedelta(seconds=int(text))
        if _DURATION_FULL.fullmatch(text):
            parts: dict[str, float] = {}
            for amount, unit in _DURATION_PART.findall(text):
                name = _UNITS[unit.lower()]
                parts[name] = parts.get(name, 0.0) + float(amount)
            return timedelta(**parts)
    return value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, defer_build=True)


class PathsSettings(_Section):
    """``[paths]``: where data and Latent's own state live, relative to the project root."""

    data_dir: str = "data"
    latent_dir: str = ".latent"


class CacheSettings(_Section):
    """``[cache]``: default task-cache expiration and where task results are stored."""

    expiration: timedelta = timedelta(days=7)
    result_storage: str | None = None

    @field_validator("expiration", mode="before")
    @classmethod
    def _parse_expiration(cls, value: Any) -> Any:
        return parse_duration(value)

    @field_validator("expiration")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be a positive duration such as 7d, 12h, 30m or 3600")
        return value


class MlflowSettings(_Section):
    """``[mlflow]``: tracking on/off, tracking URI, an experiment-name prefix, and where new
    experiments keep artifacts (a path relative to the project, or an fsspec/MLflow URL;
    default: ``artifacts/`` beside the local SQLite store, under ``.latent/``)."""

    enabled: bool = True
    tracking_uri: str | None = None
    experiment_prefix: str = ""
    artifact_location: str | None = None


class ObserveSettings(_Section):
    """``[observe]``: what Latent hides from logs, spans, MLflow and recorded errors.

    ``secret_patterns`` are regular expressions added to the built-in credential shapes
    (``sk-…``, ``Bearer …``, ``ghp_…``, ``AKIA…``, ``password=…``); a match is shown as ``***``.
    """

    secret_patterns: list[str] = Field(default_factory=list)

    @field_validator("secret_patterns")
    @classmethod
    def _compiles(cls, value: list[str]) -> list[str]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"{pattern!r} is not a regular expression ({exc})") from exc
        return value


class TaskRunnerSettings(_Section):
    """``[prefect.task_runner]``: where tasks run when a flow does not choose a runner itself.

    ``threads`` is Prefect's default; ``processes`` is Prefect's process pool; ``dask`` and
    ``ray`` need ``latent-prefect[dask]`` / ``latent-prefect[ray]``. ``address`` connects to an
    existing Dask scheduler or Ray cluster instead of starting a local one; ``workers`` sizes
    the local pool or cluster.
    """

    type: Literal["threads", "processes", "dask", "ray"] = "threads"
    workers: int | None = Field(default=None, ge=1)
    address: str | None = None


class PrefectSettings(_Section):
    """``[prefect]``: runner knobs; ``max_in_flight=None`` lets latent-prefect size to the host.

    ``server`` is the Prefect API a run uses when ``PREFECT_API_URL`` is not set: ``"managed"``
    (one local server per user, started once and reused), ``"ephemeral"`` (Prefect's temporary
    server per process) or a URL such as ``"http://127.0.0.1:4200/api"``.
    """

    server: str = "managed"
    heartbeat: bool = False
    max_in_flight: int | None = Field(default=None, ge=1)
    task_runner: TaskRunnerSettings = Field(default_factory=TaskRunnerSettings)

    @field_validator("server")
    @classmethod
    def _server(cls, value: str) -> str:
        text = value.strip()
        if text in ("managed", "ephemeral"):
            return text
        if re.match(r"https?://[^/\s]+", text):
            # a bare server address means its API, which Prefect serves under /api
            return text.rstrip("/") + "/api" if urlsplit(text).path in ("", "/") else text
        raise ValueError(
            "must be 'managed', 'ephemeral' or a Prefect API URL such as "
            f"'http://127.0.0.1:4200/api'.{did_you_mean(text, ['managed', 'ephemeral'])}"
        )


class LimitSettings(_Section):
    """``[limits.<name>]``: one endpoint's budget, shared by every task naming it.

    ``concurrency`` bounds the calls in flight at once; ``rate`` the calls per period, written as
    ``"<count>/<unit>"`` (``"600/minute"``, ``"10/second"``).
    """

    concurrency: int | None = Field(default=None, ge=1)
    rate: str | None = Field(default=None, pattern=r"^\s*\d+\s*(/|per)\s*(\d+\s*)?[a-z]+\s*$")


class Settings(_Section):
    """Everything in ``config/latent.toml``; every field has a default, so the file is optional."""

    environment: Literal["dev", "development", "production"] = "production"
    paths: PathsSettings = Field(default_factory=PathsSettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    mlflow: MlflowSettings = Field(default_factory=MlflowSettings)
    prefect: PrefectSettings = Field(default_factory=PrefectSettings)
    observe: ObserveSettings = Field(default_factory=ObserveSettings)
    limits: dict[str, LimitSettings] = Field(default_factory=dict)

    @field_validator("environment", mode="before")
    @classmethod
    def _any_case(cls, value: Any) -> Any:
        # as LATENT_ENVIRONMENT (and latent-cache reading the file alone): "Dev" is dev
        return value.strip().lower() if isinstance(value, str) else value

    @property
    def is_dev(self) -> bool:
        """True in ``dev``/``development`` (enables checkpoints and other dev-only helpers)."""
        return self.environment in ("dev", "development")

    @classmethod
    def load(cls, path: Path) -> Settings:
        """Read ``path`` (missing file = defaults), apply environment overrides, validate.

        Raises ConfigFileError naming the file and key for syntax errors, unknown keys and
        invalid values.
        """
        data = _with_env_overrides(dict(read_toml(path)))
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise ConfigFileError(_settings_message(path, exc)) from exc


def _with_env_overrides(data: dict[str, Any]) -> dict[str, Any]:
    environment = _env_environment()
    if environment is not None:
        data["environment"] = environment
    enabled = _env_flag("LATENT_MLFLOW_ENABLED")
    if enabled is not None:
        mlflow = dict(data.get("mlflow") or {})
        mlflow["enabled"] = enabled
        data["mlflow"] = mlflow
    return data


def _env_flag(name: str) -> bool | None:
    """A boolean environment variable: ``1/true/yes/on`` or ``0/false/no/off`` (any case,
    spaces ignored); None when unset or empty. Anything else raises ConfigFileError naming it."""
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return None
    flag = raw.strip().lower()
    if flag in _TRUE | _FALSE:
        return flag in _TRUE
    raise ConfigFileError(
        f"{name}={raw!r} is not a boolean. Use 1/true/yes/on or 0/false/no/off, or unset it."
    )


def _env_environment() -> str | None:
    """``LATENT_ENVIRONMENT``, lower-cased: dev, development or production; None when unset or
    empty. Anything else raises ConfigFileError naming the variable."""
    raw = os.environ.get("LATENT_ENVIRONMENT")
    if raw is None or not raw.strip():
        return None
    value = raw.strip().lower()
    if value not in _ENVIRONMENTS:
        raise ConfigFileError(
            f"LATENT_ENVIRONMENT={raw!r} is not one of 'dev', 'development', 'production'. "
            "Set it to one of these or unset it."
        )
    return value


def _settings_message(path: Path, exc: ValidationError) -> str:
    lines = [f"{path}: invalid settings:"]
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]]
        key = ".".join(loc)
        if error["type"] == "extra_forbidden":
            known = _known_keys(loc[:-1])
            section = f"[{'.'.join(loc[:-1])}]" if len(loc) > 1 else "the top level"
            hint = did_you_mean(loc[-1], known)
            lines.append(
                f"  {key}: unknown key in {section}; known keys: {', '.join(known)}.{hint}"
            )
        else:
            lines.append(f"  {key}: {error['msg']}")
    lines.append(f"Fix or remove these keys in {path}.")
    return "\n".join(lines)


def _known_keys(loc: list[str]) -> list[str]:
    model: Any = Settings
    for part in loc:
        field = model.model_fields.get(part)
        if field is None or not isinstance(field.annotation, type):
            return []
        model = field.annotation
    return sorted(model.model_fields)
