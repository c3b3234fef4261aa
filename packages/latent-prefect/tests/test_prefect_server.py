"""The managed local Prefect server: started once, shared by every run, replaced when dead.

The test session points every process at its own server through PREFECT_API_URL; these tests
remove it, so `latent` falls back to its managed server, kept in a temporary state directory
(LATENT_STATE_DIR). Every server a test starts is stopped when it ends, and a leftover one fails
the test (no orphans).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from project_dir import LATENT_TOML, ProjectDir, child_env

from latent.prefect._server import ManagedServer, _is_server_process

FLOW = """
from latent.prefect import flow, task

@task("double")
def double(x: int) -> int:
    count("double")
    return 2 * x

@flow("{name}")
def {name}():
    return [double(i) for i in range(3)]
"""


class Managed:
    """A state directory for the managed server, and `latent` runs that use it."""

    def __init__(self, state: Path) -> None:
        self.state = state
        self.env = {**child_env(), "LATENT_STATE_DIR": str(state), "COLUMNS": "200"}
        self.env.pop("PREFECT_API_URL", None)

    def project(self, root: Path, name: str = "hello") -> ProjectDir:
        project = ProjectDir(root)
        project.write("config/latent.toml", LATENT_TOML)
        project.flow(name, FLOW.format(name=name))
        return project

    def start(self, project: ProjectDir, *args: str) -> subprocess.Popen[str]:
        exe = Path(sys.executable).parent / "latent"
        return subprocess.Popen(
            [str(exe), *args],
            cwd=project.root,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def latent(self, project: ProjectDir, *args: str) -> subprocess.CompletedProcess[str]:
        process = self.start(project, *args)
        out, _ = process.communicate(timeout=400)
        return subprocess.CompletedProcess(process.args, process.returncode, out, "")

    def recorded(self) -> dict[str, object]:
        return dict(json.loads((self.state / "server.json").read_text()))

    def servers(self) -> list[psutil.Process]:
        """Live Prefect server processes with their home in this state directory."""
        home = str(self.state / "prefect")
        found = []
        for process in psutil.process_iter():
            try:
                if _is_server_process(process.pid) and process.cwd() == home:
                    found.append(process)
            except psutil.Error:
                continue
        return found


@pytest.fixture
def managed(tmp_path: Path) -> Iterator[Managed]:
    m = Managed(tmp_path / "state")
    yield m
    ManagedServer(m.state).stop()
    leftovers = m.servers()
    for process in leftovers:
        process.kill()
    assert not leftovers, f"server processes left running: {leftovers}"


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout
    return result.stdout


TYPED = """
from pydantic import BaseModel
from latent.prefect import flow, params, task

class Config(BaseModel):
    n: int

@task("double")
def double(x: int) -> int:
    count("double")
    return 2 * x

@flow("hello", config_schema=Config)
def hello():
    return double(params.n)
"""


@pytest.mark.parametrize(
    ("flow_code", "parameters", "named"),
    [
        (FLOW.format(name="hello"), "n: [1, 2\n", "parameters.yaml:2"),
        (TYPED, "n: many\n", "Configuration validation failed for flow 'hello'"),
    ],
    ids=["yaml-syntax", "typed-config"],
)
def test_invalid_config_exits_before_starting_any_server(
    managed: Managed, tmp_path: Path, flow_code: str, parameters: str, named: str
) -> None:
    project = managed.project(tmp_path / "proj")
    project.write("flows/hello/flow.py", flow_code)
    project.write("flows/hello/parameters.yaml", parameters)
    result = managed.latent(project, "run", "hello")
    assert result.returncode == 1, result.stdout  # a configuration error, not a usage one
    assert result.stdout.count(named) == 1, result.stdout  # said once
    assert "Traceback" not in result.stdout
    assert not (managed.state / "server.json").exists()
    assert managed.servers() == []
    assert project.calls() == []


@pytest.mark.slow
def test_concurrent_runs_on_two_projects_share_one_server(managed: Managed, tmp_path: Path) -> None:
    one = managed.project(tmp_path / "one")
    two = managed.project(tmp_path / "two", name="other")
    runs = [
        managed.start(one, "run", "hello"),
        managed.start(one, "run", "hello"),
        managed.start(two, "run", "other"),
        managed.start(two, "run", "other"),
    ]
    outputs = [run.communicate(timeout=400)[0] for run in runs]
    for run, out in zip(runs, outputs, strict=True):
        assert run.returncode == 0, out
        assert "database is locked" not in out
    assert len(managed.servers()) == 1
    url = str(managed.recorded()["api_url"]).removesuffix("/api")
    assert all(f"Prefect UI: {url}/runs/flow-run/" in out for out in outputs)


@pytest.mark.slow
def test_server_commands_and_a_killed_server_is_replaced(managed: Managed, tmp_path: Path) -> None:
    project = managed.project(tmp_path / "proj")
    _ok(managed.latent(project, "server", "start"))
    first = managed.recorded()
    status = _ok(managed.latent(project, "server", "status"))
    ui = str(first["api_url"]).removesuffix("/api")
    assert f"Prefect UI:  {ui}" in status

    os.kill(int(str(first["pid"])), signal.SIGKILL)
    psutil.Process(int(str(first["pid"]))).wait(timeout=30)
    assert managed.latent(project, "server", "status").returncode == 1
    # The state file now points at a dead port; its pid may even be reused by another process,
    # which must be left alone (here: this test's own process).
    stale = {**first, "pid": os.getpid()}
    (managed.state / "server.json").write_text(json.dumps(stale))

    out = _ok(managed.latent(project, "run", "hello"))
    second = managed.recorded()
    assert second["pid"] != first["pid"]
    assert f"Prefect UI: {str(second['api_url']).removesuffix('/api')}/runs/" in out
    assert [p.pid for p in managed.servers()] == [second["pid"]]

    assert "Stopped" in _ok(managed.latent(project, "server", "stop"))
    assert managed.servers() == []


@pytest.mark.slow
def test_first_start_succeeds_with_both_cores_busy(managed: Managed, tmp_path: Path) -> None:
    project = managed.project(tmp_path / "proj")
    busy = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"])
        for _ in range(os.cpu_count() or 2)
    ]
    try:
        out = _ok(managed.latent(project, "run", "hello"))
    finally:
        for process in busy:
            process.kill()
            process.wait()
    assert "Prefect UI: http://127.0.0.1:" in out
    assert project.calls().count("double") == 3


def test_an_unreachable_prefect_api_is_named_with_the_fix(managed: Managed, tmp_path: Path) -> None:
    project = managed.project(tmp_path / "proj")
    managed.env["PREFECT_API_URL"] = "http://127.0.0.1:9/api"  # nothing listens there
    result = managed.latent(project, "run", "hello")
    assert result.returncode == 1, result.stdout
    assert "http://127.0.0.1:9/api (from PREFECT_API_URL) does not answer" in result.stdout
    assert '[prefect] server = "managed"' in result.stdout and "Traceback" not in result.stdout
    assert project.calls() == [] and managed.servers() == []


def test_a_server_url_in_latent_toml_is_used_instead_of_the_managed_one(
    managed: Managed, tmp_path: Path, prefect_server: None
) -> None:
    session_api = os.environ["PREFECT_API_URL"]  # the test session's server
    project = managed.project(tmp_path / "proj")
    project.write(
        "config/latent.toml",
        LATENT_TOML + f'\n[prefect]\nserver = "{session_api.removesuffix("/api")}"\n',
    )
    out = _ok(managed.latent(project, "run", "hello"))
    assert f"Prefect UI: {session_api.removesuffix('/api')}/runs/flow-run/" in out
    assert project.calls().count("double") == 3
    assert not (managed.state / "server.json").exists() and managed.servers() == []
