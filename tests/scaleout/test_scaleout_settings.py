"""`[prefect.task_runner]` in latent.toml moves a project's tasks to worker processes: going
from threads to a process pool (or Dask, Ray) is a settings change, not a code change."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from latent.config import ConfigFileError, Project
from latent.prefect.cli import app, load_flow

pytestmark = pytest.mark.slow

FLOW = """
import os
from latent.prefect import flow, task

@task("where")
def where(i: int) -> int:
    return os.getpid()

@flow("pids")
def pids() -> list[int]:
    return [f.result() for f in where.map(i=list(range(6)))]
"""

EXPLICIT = FLOW.replace(
    '@flow("pids")',
    '@flow("pids", task_runner=ThreadPoolTaskRunner(max_workers=2))',
).replace("import os\n", "import os\nfrom prefect.task_runners import ThreadPoolTaskRunner\n")

PROCESSES = """
[mlflow]
enabled = false

[prefect.task_runner]
type = "processes"
workers = 2
"""


def _project(new_project: Callable[[str], Path], toml: str, code: str = FLOW) -> Path:
    root = new_project(toml)
    (root / "flows" / "pids").mkdir()
    (root / "flows" / "pids" / "parameters.yaml").write_text("")
    (root / "flows" / "pids" / "flow.py").write_text(code)
    return root


def test_latent_run_uses_the_process_pool_from_latent_toml(
    new_project: Callable[[str], Path],
) -> None:
    root = _project(new_project, PROCESSES)
    result = CliRunner().invoke(app, ["run", "pids"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "where" in result.output and "Completed" in result.output

    pids = load_flow(Project.discover(cwd=root), "pids")()  # cached now: no new task runs
    assert len(pids) == 6
    assert os.getpid() not in pids  # every task ran in a worker process


def test_a_runner_chosen_in_the_flow_wins_over_latent_toml(
    new_project: Callable[[str], Path],
) -> None:
    root = _project(new_project, PROCESSES, EXPLICIT)
    pids = load_flow(Project.discover(cwd=root), "pids")()
    assert set(pids) == {os.getpid()}


def test_an_unknown_runner_names_the_file_key_and_choices(
    new_project: Callable[[str], Path],
) -> None:
    root = _project(new_project, '[prefect.task_runner]\ntype = "spark"\n')
    with pytest.raises(ConfigFileError) as caught:
        Project.discover(cwd=root).settings  # noqa: B018
    message = str(caught.value)
    assert str(root / "config" / "latent.toml") in message
    assert "prefect.task_runner.type" in message
    assert "'threads', 'processes', 'dask' or 'ray'" in message


def test_with_options_works_after_the_flow_has_run(new_project: Callable[[str], Path]) -> None:
    """The project's result storage, set on each call, must not leak into `with_options`."""
    from prefect.task_runners import ThreadPoolTaskRunner

    root = _project(new_project, "[mlflow]\nenabled = false\n")
    pids = load_flow(Project.discover(cwd=root), "pids")
    first = pids()
    again = pids.with_options(task_runner=ThreadPoolTaskRunner(max_workers=2))()
    assert again == first  # answered from the same project cache
