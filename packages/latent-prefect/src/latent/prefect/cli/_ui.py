"""`latent ui`: the MLflow UI of the project's store on 127.0.0.1, started once and found again.

The UI runs as its own process (`mlflow server`, one worker) that outlives the command; where it
is (URL, pid, store) is kept in `.latent/mlflow-ui.json`, so the next `latent ui` and the links
a flow run writes point at it. `latent ui --stop` stops it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from latent.prefect.cli._app import app, console, err, project_or_exit

if TYPE_CHECKING:  # latent --help must not load latent.config (pydantic)
    from latent.config import Project

INSTALL_HINT = (
    "MLflow's UI is not installed here; install it with: pip install 'latent-prefect[ui]'"
)
DEFAULT_PORT = 5000
START_TIMEOUT_S = 180.0


@app.command()
def ui(
    port: Annotated[
        int | None,
        typer.Option(help="Port on 127.0.0.1 (default: 5000, else the next free one)."),
    ] = None,
    stop: Annotated[bool, typer.Option("--stop", help="Stop the UI this project started.")] = False,
) -> None:
    """Start (or find) the MLflow UI for this project and print it with the Prefect UI."""
    from latent.prefect import _links

    project = project_or_exit()
    if stop:
        _stop(project)
        return
    url = _find_or_start(project, port)
    console.print(f"MLflow UI:  {url}", soft_wrap=True, highlight=False)
    prefect = _links.prefect_ui_base()
    line = prefect or "no Prefect server configured (PREFECT_API_URL is not set)"
    console.print(f"Prefect UI: {escape(line)}", soft_wrap=True, highlight=False)


def _find_or_start(project: Project, port: int | None) -> str:
    from latent.prefect import _links

    uri = project.tracking_uri
    if uri.startswith(("http://", "https://")):
        return uri.rstrip("/")  # a tracking server serves its own UI
    state = _links.read_ui_state(project)
    if state and state.get("store") == uri and _healthy(str(state.get("url"))):
        return str(state["url"])
    if not _ui_installed():
        err.print(escape(INSTALL_HINT), soft_wrap=True, highlight=False)
        raise typer.Exit(1)
    chosen = port or _free_port_from(DEFAULT_PORT)
    url = f"http://127.0.0.1:{chosen}"
    log_path = project.latent_dir / "mlflow-ui.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    process = _spawn(uri, chosen, log_path)
    _wait_healthy(url, process, log_path)
    _links.write_ui_state(project, {"url": url, "pid": process.pid, "store": uri})
    return url


def _ui_installed() -> bool:
    """MLflow's UI server needs Flask, which `mlflow-skinny` (latent-observe's MLflow) lacks."""
    try:
        import flask  # noqa: F401
    except ImportError:
        return False
    return True


def _spawn(uri: str, port: int, log_path: Any) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", uri,
        "--host", "127.0.0.1", "--port", str(port),
        "--workers", "1",
    ]  # fmt: skip
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    with open(log_path, "ab") as log:
        # Its own session: it outlives this command, and `--stop` ends its whole group.
        return subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            start_new_session=True,
        )


def _wait_healthy(url: str, process: subprocess.Popen[bytes], log_path: Any) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        if _healthy(url):
            return
        time.sleep(0.25)  # polling a starting server, bounded by the deadline
    tail = log_path.read_text(errors="replace")[-1500:] if log_path.exists() else ""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
    err.print(
        escape(f"The MLflow UI did not start at {url} (log: {log_path}):\n{tail}"),
        soft_wrap=True,
        highlight=False,
    )
    raise typer.Exit(1)


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=1) as response:
            return bool(response.status == 200)
    except (OSError, ValueError):
        return False


def _free_port_from(first: int) -> int:
    for port in range(first, first + 50):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _is_mlflow_process(pid: int) -> bool:
    """Whether `pid` still is the UI we started (a stale file must not stop a stranger)."""
    try:
        return b"mlflow" in open(f"/proc/{pid}/cmdline", "rb").read()
    except FileNotFoundError:
        return False
    except OSError:  # no /proc here: trust the state file
        return True


def _stop_group(pid: int, grace_s: float = 10.0) -> None:
    """SIGTERM the UI's process group; SIGKILL it if it is still there after `grace_s`."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not _is_mlflow_process(pid):
            return
        time.sleep(0.1)  # waiting for a process that is not our child, bounded
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def _stop(project: Project) -> None:
    from latent.prefect import _links

    state = _links.read_ui_state(project)
    pid = state.get("pid") if state else None
    if not isinstance(pid, int):
        console.print("No MLflow UI started by `latent ui` for this project.", highlight=False)
        return
    if _is_mlflow_process(pid):
        _stop_group(pid)
    (project.latent_dir / _links.UI_STATE_FILE).unlink(missing_ok=True)
    console.print(f"Stopped the MLflow UI at {state.get('url') if state else '?'}", highlight=False)
