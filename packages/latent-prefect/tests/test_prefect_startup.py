"""How a run starts and stops: mistakes caught before anything starts, the project's own modules
importable everywhere, Ctrl-C and SIGTERM honoured within seconds.

These run `latent` (and flow files as scripts) in real processes on the test session's server.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from project_dir import ProjectDir, child_env

HELPERS_FLOW = """
from latent.prefect import flow, task, params
from flows.common.text import shout
from utils import exclaim

@task("loud")
def loud(word: str) -> str:
    count("loud")
    return exclaim(shout(word))

@flow("calc")
def calc():
    return [loud.submit(w).result() for w in params.words]

if __name__ == "__main__":
    print("RESULT", calc())
"""


def _helpers(project: ProjectDir) -> None:
    project.write("flows/common/__init__.py", "")
    project.write("flows/common/text.py", "def shout(word):\n    return word.upper()\n")
    project.write("utils.py", "def exclaim(word):\n    return word + '!'\n")
    project.flow("calc", HELPERS_FLOW, parameters={"words": ["a", "b"]})


def _python(project: ProjectDir, *args: str, cwd: Path | None = None) -> str:
    result = subprocess.run(
        [sys.executable, *args],
        cwd=cwd or project.root,
        capture_output=True,
        text=True,
        timeout=300,
        env=child_env(),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def _latent(project: ProjectDir, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).parent / "latent"
    return subprocess.run(
        [str(exe), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env={**child_env(), "COLUMNS": "200"},
    )


@pytest.mark.slow
def test_project_modules_import_under_latent_run_a_script_a_subfolder_and_a_process_pool(
    project: ProjectDir,
) -> None:
    _helpers(project)
    project.latent("run", "calc")
    assert project.calls().count("loud") == 2

    from_subfolder = _latent(project, "run", "calc", "-p", "words=[c]", cwd=project.root / "flows")
    assert from_subfolder.returncode == 0, from_subfolder.stdout + from_subfolder.stderr

    script = _python(project, "flows/calc/flow.py", "--ignored")
    assert "RESULT ['A!', 'B!']" in script  # cached by the first run: same keys as a script

    project.write(
        "config/latent.toml",
        project.text("config/latent.toml") + '\n[prefect.task_runner]\ntype = "processes"\n',
    )
    project.latent("run", "calc", "-p", "words=[d, e]")
    assert project.calls().count("loud") == 5  # a, b; c; d, e (in pool workers)


def test_a_notebook_under_the_project_imports_its_modules(project: ProjectDir) -> None:
    """A notebook kernel runs in the notebook's folder and has no script file: like `python -c`."""
    _helpers(project)
    (project.root / "notebooks").mkdir()
    code = "from latent.prefect import flow\nfrom flows.common.text import shout\nprint(shout('x'))"
    out = _python(project, "-c", code, cwd=project.root / "notebooks")
    assert out.strip() == "X"


def test_new_flow_runs_as_a_script(project: ProjectDir) -> None:
    project.latent("new", "flow", "greet")
    out = _python(project, "flows/greet/flow.py")
    assert "Traceback" not in out
    assert '__name__ == "__main__"' in project.text("flows/greet/flow.py")


def test_an_unknown_flow_fails_before_the_first_runs(project: ProjectDir) -> None:
    _helpers(project)
    result = project.latent("run", "calc", "clac", check=False)
    assert result.returncode == 2
    assert "Did you mean 'calc'?" in result.stderr
    assert project.calls() == []  # `calc` never ran


BAD_PARAM_FLOW = """
from latent.prefect import flow, task

@task("read", input="missing_table", retries=2)
def read(missing_table):
    count("read")
    return missing_table

@flow("reader")
def reader():
    return read()
"""


def test_a_config_error_in_a_run_is_not_retried_and_printed_once(project: ProjectDir) -> None:
    project.flow(
        "reader",
        BAD_PARAM_FLOW,
        catalog={"missing_table": {"type": "json", "filepath": "data/nowhere.json"}},
    )
    result = project.latent("run", "reader", check=False)
    out = result.stdout + result.stderr
    assert result.returncode == 1, out
    assert "Traceback" not in out
    assert "attempt 2/" not in out, out  # not retried
    assert out.count("Flow 'reader' failed: DatasetError") == 1, out
    assert project.calls() == []  # the load failed before the body ran


def test_a_bad_override_is_reported_before_prefect_starts(project: ProjectDir) -> None:
    project.flow("typed", TYPED_FLOW, parameters={"size": 3})
    started = time.perf_counter()
    result = project.latent("run", "typed", "-p", "size=lots", check=False)
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.count("Configuration validation failed for flow 'typed'") == 1
    assert "size" in result.stderr and "Traceback" not in result.stderr
    assert "latent run typed" not in result.stdout  # the flow never started
    assert time.perf_counter() - started < 120  # bounded; not a timing assertion on speed


TYPED_FLOW = """
from pydantic import BaseModel
from latent.prefect import flow, params

class Config(BaseModel):
    size: int

@flow("typed", config_schema=Config)
def typed():
    count("typed")
    return params.size
"""

INTERRUPTED_FLOW = """
import os, time
from latent.prefect import flow, task

@task("row")
def row(i: int) -> int:
    if i >= 3 and not os.environ.get("ALL_FAST"):
        time.sleep(300)
    count(f"row{{i}}")
    return i

@flow("{name}")
def {name}():
    return [f.result() for f in row.map(range(6))]
"""


def _is_shared_writer(process: psutil.Process) -> bool:
    try:
        return "latent.observe._shared import zygote" in " ".join(process.cmdline())
    except psutil.Error:
        return False


@pytest.mark.slow
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_mid_map_stops_the_run_and_keeps_finished_rows(
    project: ProjectDir, signum: int, code: int
) -> None:
    name = f"stop_{signal.Signals(signum).name.lower()}"
    project.flow(name, INTERRUPTED_FLOW.format(name=name))
    exe = Path(sys.executable).parent / "latent"
    process = subprocess.Popen(
        [str(exe), "run", name],
        cwd=project.root,
        env=child_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 180
        while len(project.calls()) < 3 and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.2)
        assert sorted(project.calls()) == ["row0", "row1", "row2"]
        # MLflow's shared writer, when this run started it, is meant to outlive it
        children = [
            child
            for child in psutil.Process(process.pid).children(recursive=True)
            if not _is_shared_writer(child)
        ]
        process.send_signal(signum)
        out, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == code, out
    assert "Interrupted" in out and "Traceback" not in out
    _, alive = psutil.wait_procs(children, timeout=10)
    assert alive == []  # no orphaned process
    assert _last_state(name) in ("CRASHED", "CANCELLED")

    rerun = subprocess.run(
        [str(exe), "run", name],
        cwd=project.root,
        env={**child_env(), "ALL_FAST": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    # finished rows came from the cache; only the interrupted ones ran again
    assert sorted(project.calls()) == [f"row{i}" for i in range(6)]


def _last_state(flow_name: str) -> str | None:
    """The state type of the latest run of `flow_name` on the session's Prefect server."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowFilter, FlowFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])),
            sort=FlowRunSort.START_TIME_DESC,
            limit=1,
        )
    state = runs[0].state if runs else None
    return state.type.value if state is not None else None
