"""Issue 6, point 9: the example against a real `prefect server start` on 127.0.0.1.

The server has its own PREFECT_HOME (SQLite); `latent run answer` runs in a subprocess with
PREFECT_API_URL pointing at it; the flow run and its task runs are then read back through
Prefect's client, as a user would see them in the UI.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from conftest import copy_example, free_port

pytestmark = pytest.mark.slow

STARTUP_LIMIT_S = 180.0  # a busy 2-core CI box can take a minute to migrate a fresh database


def _server_env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_UI_ENABLED="false",
        DO_NOT_TRACK="1",
    )
    env.pop("PREFECT_API_URL", None)
    return env


def _wait_healthy(url: str, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + STARTUP_LIMIT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"prefect server exited with {server.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    pytest.fail(f"prefect server not healthy after {STARTUP_LIMIT_S:.0f} s:\n{log.read_text()}")


@pytest.fixture
def prefect_server(tmp_path: Path) -> Iterator[str]:
    """A `prefect server start` process; yields its API URL and stops it afterwards."""
    port = free_port()
    log = tmp_path / "server.log"
    prefect = Path(sys.executable).parent / "prefect"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [str(prefect), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=_server_env(tmp_path / "server-home"),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}/api"
    try:
        _wait_healthy(url, server, log)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


async def _runs(url: str) -> tuple[list[Any], dict[Any, str], list[Any]]:
    from prefect import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: url}):
        async with get_client() as client:
            flow_runs = await client.read_flow_runs()
            task_runs = await client.read_task_runs(limit=200)
            flows = {f.id: f.name for f in await client.read_flows()}
    return flow_runs, flows, task_runs


def test_example_runs_against_a_real_prefect_server(tmp_path: Path, prefect_server: str) -> None:
    root = copy_example(tmp_path / "proj", max_questions=8)
    env = _server_env(tmp_path / "client-home")
    env.update(PREFECT_API_URL=prefect_server, LATENT_MLFLOW_ENABLED="0")
    done = subprocess.run(
        [sys.executable, "-m", "latent.prefect.cli", "run", "answer"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr

    flow_runs, flows, task_runs = asyncio.run(_runs(prefect_server))
    answer_runs = [r for r in flow_runs if flows.get(r.flow_id) == "answer"]
    assert len(answer_runs) == 1
    (run,) = answer_runs
    assert run.state is not None and run.state.is_completed()
    names = sorted(t.name for t in task_runs if t.flow_run_id == run.id)
    # the map's 8 rows ran in one batch: a task run named by its rows
    assert "answer_question[0-7]" in names
    names = [n.rsplit("-", 1)[0] for n in names]
    assert "build_prompts" in names and "score_answers" in names
    assert all(t.state is not None and t.state.is_completed() for t in task_runs)
