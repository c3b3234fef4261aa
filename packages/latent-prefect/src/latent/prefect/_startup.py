"""What a top-level run settles before Prefect starts: its checked configuration and its server.

A mistake in the user's configuration must cost a second, not a server start-up: a run checks
its parameters, typed config and catalog first, then picks the Prefect API it talks to
(`_server.py`). `latent run` does both for every flow it was given before the first runs; a flow
called directly (a script, a notebook) does them in `LatentFlow.__call__`.

This module imports neither Prefect nor the server's module at import time (`latent --help`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from latent.config import Project
    from latent.prefect._flow import LatentFlow

_chosen: list[str] = []  # the API URL this process itself put in PREFECT_API_URL

#: Defaults that keep a run quiet and off the network (each can be set otherwise by the user).
QUIET_DEFAULTS = {
    "DO_NOT_TRACK": "1",  # Prefect's client telemetry
    "MLFLOW_DISABLE_TELEMETRY": "true",  # MLflow's (it reads DO_NOT_TRACK only as "true")
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",  # an ephemeral server's analytics
    # MLflow's and alembic's INFO lines ("Flushing the async trace logging queue...", schema
    # migrations) are for debugging: `latent run -v` shows them (see `verbose_logging`)
    "MLFLOW_LOGGING_LEVEL": "WARNING",
}
_MLFLOW_LOGGERS = ("mlflow", "alembic")


def quiet_defaults() -> None:
    """Turn telemetry off unless the user chose otherwise (before Prefect reads its settings)."""
    for name, value in QUIET_DEFAULTS.items():
        os.environ.setdefault(name, value)


def verbose_logging() -> None:
    """`-v`: MLflow's INFO lines again, unless the user set their level themselves."""
    if os.environ.get("MLFLOW_LOGGING_LEVEL") == QUIET_DEFAULTS["MLFLOW_LOGGING_LEVEL"]:
        os.environ["MLFLOW_LOGGING_LEVEL"] = "INFO"


def quiet_mlflow_loggers() -> None:
    """MLflow's and alembic's loggers at WARNING unless `-v` (or the user) asked for more."""
    import logging

    level = os.environ.get("MLFLOW_LOGGING_LEVEL", "").upper()
    if level == QUIET_DEFAULTS["MLFLOW_LOGGING_LEVEL"]:
        for name in _MLFLOW_LOGGERS:
            logger = logging.getLogger(name)
            if logger.level in (logging.NOTSET, logging.INFO):
                logger.setLevel(logging.WARNING)
        # MLflow's HTTP client logs each retry of a tracking server that does not answer;
        # Latent says once what was not recorded
        retries = logging.getLogger("urllib3.connectionpool")
        if retries.level == logging.NOTSET:
            retries.setLevel(logging.ERROR)


def warm_up_tracking(project: Project) -> None:
    """For `latent run`: MLflow imported and the store opened in the background from now on,
    and each flow run's MLflow run ended in the background (the next flow does not wait).

    Called once the configuration is checked (a mistake starts nothing), before Prefect is
    imported: MLflow's start-up (seconds) then overlaps Prefect's. `latent run` waits, bounded,
    at its end (`latent.observe.wait_for_tracking`).
    """
    from latent.observe import defer_run_end
    from latent.observe import warm_up_tracking as warm_up
    from latent.prefect._crashed import mark_crashed_runs
    from latent.prefect._runtime import prepare

    quiet_mlflow_loggers()
    prepare(project)
    defer_run_end()
    warm_up()
    mark_crashed_runs(project)  # runs of killed processes: FAILED / Crashed (in the background)


def finish_tracking() -> None:
    """The end of `latent run`: wait (bounded) for the MLflow writes `warm_up_tracking` let run
    in the background; flow runs called later in this process end in the foreground again."""
    from latent.observe import defer_run_end, wait_for_tracking
    from latent.prefect._crashed import wait_for_marking

    try:
        wait_for_marking()
        wait_for_tracking(exiting=True)
    finally:
        defer_run_end(False)


def choose_server(project: Project, *, announce: bool = True) -> str | None:
    """Point this process, and the processes it starts, at the Prefect API a run uses.

    ``PREFECT_API_URL`` (or the active Prefect profile's) always wins; else ``[prefect] server``:
    the managed local server (started if needed), a URL, or ``"ephemeral"`` (Prefect's own
    temporary server, given a start-up bound that holds on a busy machine). Returns the API URL
    this sets, or None when Prefect's own configuration is left alone.
    """
    from latent.prefect._server import ManagedServer, configured_api_url, startup_timeout

    current = os.environ.get("PREFECT_API_URL")
    if current and current not in _chosen:
        return None
    if not current and configured_api_url():
        return None
    setting = project.settings.prefect.server
    if setting == "ephemeral":
        bound = str(int(startup_timeout()))
        os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", bound)
        return None
    if setting == "managed":
        url = ManagedServer().ensure(_print_to_stderr if announce else None).api_url
    else:
        url = setting
    os.environ["PREFECT_API_URL"] = url
    _chosen[:] = [url]
    return url


def use_running_server(project: Project) -> None:
    """Before Prefect is imported: point it at the managed server if one is up already.

    Prefect reads its settings once, when it is imported; a server chosen after that reaches
    each flow call through `temporary_settings`, which validates all of Prefect's settings again
    (~0.1 s a call). Starting a server waits until every check of `latent run` passed
    (`choose_server`); finding a running one costs a health check of milliseconds.
    """
    from latent.prefect._server import ManagedServer, configured_api_url

    if os.environ.get("PREFECT_API_URL") or project.settings.prefect.server != "managed":
        return
    if configured_api_url():
        return
    info = ManagedServer().running()
    if info is not None:
        os.environ["PREFECT_API_URL"] = info.api_url
        _chosen[:] = [info.api_url]


def check_reachable() -> None:
    """Fail with a readable message when the local Prefect API a run will use does not answer.

    Only local addresses are checked (a remote or Cloud API may need credentials for its health
    check); without this, Prefect retries for a minute and ends in a bare `ConnectError`.
    """
    from urllib.parse import urlsplit

    from latent.prefect._server import configured_api_url, healthy
    from latent.prefect.errors import PrefectServerError

    url = configured_api_url()
    if not url or urlsplit(url).hostname not in ("127.0.0.1", "localhost", "::1"):
        return
    if healthy(url, timeout=10.0):
        return
    source = (
        "our managed server"
        if url in _chosen
        else "PREFECT_API_URL"
        if os.environ.get("PREFECT_API_URL")
        else "the active Prefect profile"
    )
    raise PrefectServerError(
        f"The Prefect API at {url} (from {source}) does not answer its health check. Start that "
        "server, or unset PREFECT_API_URL so that Latent starts and uses its own local server "
        '(`[prefect] server = "managed"`, the default).'
    )


def check_flow(flow: LatentFlow[Any, Any], project: Project) -> None:
    """Raise the LatentConfigError a run of `flow` would: parameters, typed config, catalog."""
    from latent.prefect._flow_spec import make_run

    if flow.spec is not None:
        make_run(flow.spec, project, nested=False)


def prefect_settings_for_call(flow: LatentFlow[Any, Any], project: Project) -> dict[Any, Any]:
    """Prefect setting overrides for a top-level call of `flow`: config checked, server chosen.

    Prefect read its settings when it was imported, before the server was known; the flow call
    runs inside `temporary_settings(updates=...)` with these.
    """
    from latent.prefect._server import configured_api_url, startup_timeout
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
    )

    check_flow(flow, project)
    url = choose_server(project)
    if url is not None:
        return {PREFECT_API_URL: url}
    if project.settings.prefect.server == "ephemeral" and not configured_api_url():
        return {PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS: startup_timeout()}
    return {}


def heartbeat_setting(project: Project) -> dict[Any, Any]:
    """Prefect's flow-run heartbeat off unless ``[prefect] heartbeat = true`` (~1 s a local
    flow; Prefect's default is on)."""
    from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY

    return {} if project.settings.prefect.heartbeat else {PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}


def changed(updates: dict[Any, Any]) -> dict[Any, Any]:
    """The updates whose value differs from Prefect's current one."""
    return {setting: value for setting, value in updates.items() if setting.value() != value}


@contextmanager
def settings_for_runs(project: Project) -> Iterator[None]:
    """`latent run`: Prefect's settings for all its flows, set once.

    A flow call finds them in force and skips `temporary_settings`, which validates all of
    Prefect's settings again (~60 ms a call). The API URL is the one `choose_server` picked.
    """
    from prefect.settings import PREFECT_API_URL, temporary_settings

    updates = heartbeat_setting(project)
    if os.environ.get("PREFECT_API_URL"):
        updates[PREFECT_API_URL] = os.environ["PREFECT_API_URL"]
    updates = changed(updates)
    if not updates:
        yield
        return
    with temporary_settings(updates=updates):
        yield


def ui_url_of_flow_run(flow_run_id: Any) -> str | None:
    """The Prefect UI page of a flow run, when the server it ran on is still up (not ephemeral)."""
    from latent.prefect._server import configured_api_url
    from prefect.settings import PREFECT_UI_URL

    api = os.environ.get("PREFECT_API_URL") or configured_api_url()
    if not api:
        return None
    ui = PREFECT_UI_URL.value() or api.removesuffix("/api")
    return f"{ui.rstrip('/')}/runs/flow-run/{flow_run_id}"


def _print_to_stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


__all__ = [
    "QUIET_DEFAULTS",
    "check_flow",
    "check_reachable",
    "choose_server",
    "finish_tracking",
    "prefect_settings_for_call",
    "quiet_defaults",
    "quiet_mlflow_loggers",
    "ui_url_of_flow_run",
    "verbose_logging",
    "warm_up_tracking",
]
