"""Issue 16.3: a credential in an exception never leaves the process.

A task fails with a 401 whose message quotes the request's bearer token. Under `latent run`
(MLflow on its default local store, Prefect logs shipped to the session's server), the token
must appear nowhere a user or an operator could read it later: the terminal, the MLflow store
(database and artifacts), the Prefect database, and every file under `.latent/`. The code that
catches the error still gets the original exception, message intact.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from reliability_project import ProjectDir, child_env

TOKEN = "sk-test-123456"

FLOW = """
from latent.prefect import flow, params, task

@task("call_api", retries=1, retry_delay_seconds=0)
def call_api(prompt: str, headers: dict) -> str:
    raise RuntimeError(f"HTTP 401 headers={headers!r}")

@flow("leaky")
def leaky():
    return call_api("hello", {"Authorization": params.auth_header})
"""

CATCHING_FLOW = """
from latent.prefect import TaskExecutionError, flow, task

@task("call_api", retries=0)
def call_api(prompt: str) -> str:
    raise RuntimeError("HTTP 401 headers={'Authorization': 'Bearer sk-test-123456'}")

@flow("catching")
def catching():
    try:
        call_api("hello")
    except TaskExecutionError as exc:
        return str(exc), str(exc.__cause__), str(exc.original)
"""

TRACKED_TOML = 'environment = "dev"\n'


def _files_holding(root: Path, needle: bytes, *, skip: tuple[str, ...] = ()) -> list[str]:
    found = []
    for path in root.rglob("*"):
        if not path.is_file() or any(part in skip for part in path.relative_to(root).parts):
            continue
        try:
            data = path.read_bytes()
        except OSError:
            continue
        if needle in data:
            found.append(str(path.relative_to(root)))
    return found


@pytest.mark.slow
def test_bearer_token_in_a_task_error_reaches_no_terminal_store_or_file(
    project: ProjectDir,
) -> None:
    project.write("config/latent.toml", TRACKED_TOML)
    # The token arrives as a parameter under a key that does not look secret, is passed to the
    # task as an argument (a span input), and comes back inside the exception's message.
    project.flow("leaky", FLOW, parameters={"auth_header": f"Bearer {TOKEN}"})
    env = {
        **child_env(),
        "COLUMNS": "200",
        "PREFECT_LOGGING_TO_API_ENABLED": "true",  # logs go to the Prefect database too
        "PREFECT_LOGGING_LEVEL": "INFO",
    }
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "latent"), "run", "leaky"],
        cwd=project.root,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    terminal = proc.stdout + proc.stderr
    assert proc.returncode != 0, terminal
    assert "HTTP 401" in terminal and "***" in terminal  # the error is still explained
    assert TOKEN not in terminal and "test-123456" not in terminal, terminal

    # The MLflow store (mlflow.db + artifacts) and everything else Latent keeps.
    latent_dir = project.root / ".latent"
    assert (latent_dir / "mlflow.db").exists()
    assert _files_holding(latent_dir, b"test-123456") == []
    assert _files_holding(project.root, b"test-123456", skip=("flows",)) == []
    # The Prefect server's database (and its WAL) and its log.
    prefect_home = Path(os.environ["PREFECT_HOME"])
    assert list(prefect_home.glob("*.db")), list(prefect_home.iterdir())
    assert _files_holding(prefect_home, b"test-123456") == []


def test_the_code_that_catches_the_error_gets_the_original_message(project: ProjectDir) -> None:
    project.flow("catching", CATCHING_FLOW)
    recorded, cause, original = project.load("catching")()
    assert TOKEN in cause and TOKEN in original  # the user's own exception is untouched
    assert TOKEN not in recorded and "***" in recorded
