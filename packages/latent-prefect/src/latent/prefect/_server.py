"""One local Prefect server per user, started once in the background and reused by every run.

Without a server, every Prefect process starts its own temporary one (seconds on an idle machine,
a time-out on a busy one) on the shared `~/.prefect/prefect.db`, and its UI is gone when the run
ends. Latent instead starts a real `prefect server start` once, detached from the run that
started it, with its own ``PREFECT_HOME`` under Latent's state directory, and records its URL and
process id in a state file. Later runs, concurrent or not, find it there and check it answers
(milliseconds). A file lock makes two runs racing to start it end with one server; a server that
died, or a state file left by one, is detected and replaced.

The server is per user, not per project: one process (~200 MB) serves every project on the
machine, the UI stays at one address, and a 2-core machine never runs one server per project.
(Projects whose flows share a name share that flow in the UI, as on any shared Prefect server;
``[prefect] server = "<url>"`` points a project at a server of its own.)

This module does not import Prefect: `latent run` picks the server before Prefect reads its
settings.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from latent.prefect.errors import PrefectServerError

if TYPE_CHECKING:
    from filelock import FileLock

__all__ = [
    "STATE_DIR_ENV",
    "ManagedServer",
    "ServerInfo",
    "configured_api_url",
    "state_dir",
    "writer_dir",
]

#: Points Latent's state directory (the managed server's home and state file) elsewhere.
STATE_DIR_ENV = "LATENT_STATE_DIR"
#: Seconds a new server may take to answer; a fresh database on a loaded 2-core machine is slow.
STARTUP_TIMEOUT_ENV = "LATENT_SERVER_STARTUP_TIMEOUT"
DEFAULT_STARTUP_TIMEOUT_S = 300.0
_SERVER_ARGS = ("--analytics-off", "--host", "127.0.0.1", "--port")
_HEALTHY_FAST_S = 1.0  # an idle local server answers /health in a few milliseconds
_HEALTHY_PATIENT_S = 30.0  # before replacing a live server, let a busy one answer


def state_dir() -> Path:
    """Latent's per-user state: ``$LATENT_STATE_DIR``, else ``$XDG_STATE_HOME/latent``, else
    ``~/.local/state/latent``."""
    configured = os.environ.get(STATE_DIR_ENV)
    if configured:
        return Path(configured).expanduser().resolve()
    xdg = os.environ.get("XDG_STATE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "state"
    return base / "latent"


WRITER_DIR = "mlflow-writer"


def writer_dir() -> Path:
    """Where MLflow's shared writer listens (`latent.observe.share_writers`)."""
    return state_dir() / WRITER_DIR


@dataclass(frozen=True)
class ServerInfo:
    """Where a managed server listens, what process it is, and where its files are."""

    api_url: str
    pid: int
    home: str
    started_at: float

    @property
    def ui_url(self) -> str:
        """The Prefect UI (the API URL without ``/api``)."""
        return self.api_url.removesuffix("/api")

    @property
    def log_file(self) -> Path:
        return Path(self.home) / "server.log"


class ManagedServer:
    """The managed Prefect server recorded under `directory` (default: `state_dir()`)."""

    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory or state_dir()
        self.home = self.directory / "prefect"
        self.state_file = self.directory / "server.json"
        self.lock_file = self.directory / "server.lock"

    # -- reading -------------------------------------------------------------------------

    def recorded(self) -> ServerInfo | None:
        """What the state file says, whether or not that server is still up."""
        try:
            data = json.loads(self.state_file.read_text())
            return ServerInfo(**data)
        except (OSError, ValueError, TypeError):
            return None

    def running(self, timeout: float = _HEALTHY_FAST_S) -> ServerInfo | None:
        """The recorded server if its process lives and its API answers within `timeout`."""
        info = self.recorded()
        if info is None or not _is_server_process(info.pid):
            return None
        return info if healthy(info.api_url, timeout) else None

    # -- starting and stopping -----------------------------------------------------------

    def ensure(self, announce: Callable[[str], None] | None = None) -> ServerInfo:
        """The running server, started (once, under the lock) if there is none."""
        info = self.running()
        if info is not None:
            return info
        with self._lock():
            # Another run may have started it while this one waited for the lock; a busy
            # server may be slow to answer: give a live one time before replacing it.
            recorded = self.recorded()
            alive = recorded is not None and _is_server_process(recorded.pid)
            info = self.running(timeout=_HEALTHY_PATIENT_S if alive else _HEALTHY_FAST_S)
            if info is not None:
                return info
            if recorded is not None and alive:  # a hung server of ours; never a reused pid
                _terminate(recorded.pid)
            return self._start(announce)

    def stop(self) -> ServerInfo | None:
        """Stop the recorded server (if it runs) and forget it; returns what was stopped."""
        with self._lock():
            info = self.recorded()
            self.state_file.unlink(missing_ok=True)
            if info is None or not _is_server_process(info.pid):
                return None
            _terminate(info.pid)
            return info

    def _lock(self) -> FileLock:
        from filelock import FileLock

        self.directory.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.lock_file), timeout=startup_timeout() + 60)

    def _start(self, announce: Callable[[str], None] | None) -> ServerInfo:
        self.home.mkdir(parents=True, exist_ok=True)
        port = _free_port()
        api_url = f"http://127.0.0.1:{port}/api"
        if announce is not None:
            announce(f"Starting Latent's local Prefect server at {api_url} (home {self.home})")
        log_path = self.home / "server.log"
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "prefect",
                    "server",
                    "start",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--analytics-off",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._server_env(),
                cwd=self.home,
                start_new_session=True,  # outlives this run; Ctrl-C in its terminal spares it
            )
        info = ServerInfo(api_url, process.pid, str(self.home), time.time())
        self._wait_healthy(process, info)
        _write_atomically(self.state_file, json.dumps(asdict(info), indent=2))
        return info

    def _server_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        env.update(
            PREFECT_HOME=str(self.home),
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
            PREFECT_SERVER_LOGGING_LEVEL="WARNING",
            PREFECT_LOGGING_LEVEL="WARNING",
            # SQLite under a busy machine: wait for the write lock rather than fail a request
            PREFECT_SERVER_DATABASE_TIMEOUT="60",
            PREFECT_SERVER_DATABASE_CONNECTION_TIMEOUT="60",
            DO_NOT_TRACK="1",
        )
        return env

    def _wait_healthy(self, process: subprocess.Popen[bytes], info: ServerInfo) -> None:
        bound = startup_timeout()
        deadline = time.monotonic() + bound
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise PrefectServerError(
                    f"The local Prefect server (home {self.home}) exited with code "
                    f"{process.returncode} while starting on {info.api_url}.\n"
                    f"{_tail(info.log_file)}\n"
                    f"{_FIXES}"
                )
            if healthy(info.api_url, _HEALTHY_FAST_S):
                return
            time.sleep(0.1)
        _terminate(process.pid)
        raise PrefectServerError(
            f"The local Prefect server (home {self.home}) did not answer on {info.api_url} "
            f"within {bound:g} s; it was stopped.\n{_tail(info.log_file)}\n"
            f"On a busy machine, raise {STARTUP_TIMEOUT_ENV} (seconds). {_FIXES}"
        )


_FIXES = (
    "To run without it, set PREFECT_API_URL to a Prefect server you run, or "
    '[prefect] server = "ephemeral" in config/latent.toml (a temporary server per run).'
)


def startup_timeout() -> float:
    """How long a starting server may take (``$LATENT_SERVER_STARTUP_TIMEOUT`` seconds)."""
    try:
        return float(os.environ.get(STARTUP_TIMEOUT_ENV, DEFAULT_STARTUP_TIMEOUT_S))
    except ValueError:
        return DEFAULT_STARTUP_TIMEOUT_S


def healthy(api_url: str, timeout: float) -> bool:
    """Whether the Prefect API at `api_url` answers its health check within `timeout`."""
    import urllib.request

    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=timeout) as response:
            return bool(response.status == 200)
    except (OSError, ValueError):  # URLError is an OSError
        return False


def configured_api_url() -> str | None:
    """The API URL the user gave Prefect: ``$PREFECT_API_URL``, else the active profile's."""
    url = os.environ.get("PREFECT_API_URL")
    if url:
        return url
    home = Path(os.environ.get("PREFECT_HOME") or Path.home() / ".prefect").expanduser()
    path = Path(os.environ.get("PREFECT_PROFILES_PATH") or home / "profiles.toml").expanduser()
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return None
    active = os.environ.get("PREFECT_PROFILE") or data.get("active") or "ephemeral"
    profile = (data.get("profiles") or {}).get(active) or {}
    value = profile.get("PREFECT_API_URL")
    return str(value) if value else None


def _is_server_process(pid: int) -> bool:
    """Whether `pid` is alive and is a Prefect server (not another process that reused it)."""
    import psutil

    try:
        args = psutil.Process(pid).cmdline()
    except (psutil.Error, OSError):
        return False
    # `<python> -m prefect server start ...` (or the `prefect` script)
    return any(
        Path(args[i]).name == "prefect" and args[i + 1 : i + 3] == ["server", "start"]
        for i in range(len(args) - 2)
    )


def _terminate(pid: int) -> None:
    """Stop a server process and its children: SIGTERM, then SIGKILL after a grace period."""
    import psutil

    try:
        parent = psutil.Process(pid)
        processes = [parent, *parent.children(recursive=True)]
    except psutil.Error:
        return
    for process in processes:
        with contextlib.suppress(psutil.Error):
            process.terminate()
    _, alive = psutil.wait_procs(processes, timeout=15)
    for process in alive:
        with contextlib.suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(alive, timeout=5)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return f"(no server log at {path})"
    return f"Last lines of {path}:\n" + "\n".join(f"  {line}" for line in text)


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
