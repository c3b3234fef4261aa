"""Session-wide test environment, set before any test imports Prefect.

One Prefect API server per test session: a real `prefect server start` on 127.0.0.1 with its own
PREFECT_HOME (SQLite), started in the background when pytest starts and shared through
PREFECT_API_URL by the test process and every subprocess a test starts (`latent run ...`).
Without it each process would start Prefect's embedded server (10-20 s each) and create a fresh
database. Tests that need no Prefect never wait for it; the first that does waits (bounded).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# Helpers shared by the suites (`tests/project_dir.py`), importable from every test directory.
sys.path.insert(0, str(Path(__file__).resolve().parent / "tests"))

_server: subprocess.Popen[bytes] | None = None
_home: str | None = None
_state_dir: str | None = None
STARTUP_TIMEOUT_S = 240


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pytest_configure(config: pytest.Config) -> None:
    global _server, _home, _state_dir
    for var in ("LATENT_PROJECT_ROOT", "LATENT_ENVIRONMENT", "MLFLOW_TRACKING_URI"):
        os.environ.pop(var, None)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    # the session server stops before the last log records could be shipped to it
    os.environ.setdefault("PREFECT_LOGGING_TO_API_ENABLED", "false")
    # a fresh database on a busy 2-core machine can take longer than the 20 s default
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    # A process that misses PREFECT_API_URL starts Latent's managed server here, not in the
    # user's state directory; it is stopped when the session ends.
    # MLflow's shared writers of tests that use a state directory of their own exit soon
    os.environ.setdefault("LATENT_MLFLOW_WRITER_IDLE", "60")
    if "LATENT_STATE_DIR" not in os.environ:
        _state_dir = tempfile.mkdtemp(prefix="latent-tests-state-")
        os.environ["LATENT_STATE_DIR"] = _state_dir
    if "PREFECT_API_URL" in os.environ or hasattr(config, "workerinput"):
        return
    _home = tempfile.mkdtemp(prefix="latent-tests-prefect-")
    os.environ["PREFECT_HOME"] = _home
    port = _free_port()
    prefect = Path(sys.executable).parent / "prefect"
    log = open(Path(_home) / "server.log", "wb")  # noqa: SIM115 - lives as long as the server
    _server = subprocess.Popen(
        [str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PREFECT_UI_ENABLED": "false", "PREFECT_LOGGING_LEVEL": "WARNING"},
        start_new_session=True,
    )
    os.environ["PREFECT_API_URL"] = f"http://127.0.0.1:{port}/api"


def wait_for_prefect_server() -> None:
    """Block until the session's Prefect server answers /health (or fail with its log)."""
    if _server is None:
        return
    url = os.environ["PREFECT_API_URL"] + "/health"
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if _server.poll() is not None:
            break
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.25)
    log = (Path(_home or ".") / "server.log").read_text(errors="replace")[-3000:]
    pytest.fail(f"Prefect test server did not become healthy at {url}:\n{log}")


@pytest.fixture(scope="session")
def prefect_server() -> None:
    """Depend on this in tests that run Prefect flows (the conftests of those suites do)."""
    wait_for_prefect_server()


@pytest.fixture
def new_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], Path]]:
    """Lay out an empty Latent project (config/, flows/, data/) and work inside it.

    Call it with the text of config/latent.toml; returns the project root. The working directory
    and the LATENT_* / MLFLOW_* variables are restored, and the process-wide task registry cleared.
    """
    from latent.registry import TaskRegistry

    def make(latent_toml: str) -> Path:
        root = tmp_path / "proj"
        (root / "config").mkdir(parents=True)
        (root / "config" / "latent.toml").write_text(latent_toml)
        (root / "config" / "global.yaml").write_text("")
        (root / "flows").mkdir()
        (root / "data").mkdir()
        monkeypatch.chdir(root)
        for var in ("LATENT_ENVIRONMENT", "LATENT_PROJECT_ROOT", "MLFLOW_TRACKING_URI"):
            monkeypatch.delenv(var, raising=False)
        return root

    TaskRegistry.clear()
    yield make
    TaskRegistry.clear()


def pytest_unconfigure(config: pytest.Config) -> None:
    if _state_dir is not None:
        from latent.observe import stop_shared_writers
        from latent.prefect._server import WRITER_DIR, ManagedServer

        ManagedServer(Path(_state_dir)).stop()
        stop_shared_writers(Path(_state_dir) / WRITER_DIR)
        shutil.rmtree(_state_dir, ignore_errors=True)
    if _server is not None and _server.poll() is None:
        os.killpg(_server.pid, signal.SIGTERM)
        try:
            _server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(_server.pid, signal.SIGKILL)
    if _home is not None:
        shutil.rmtree(_home, ignore_errors=True)
