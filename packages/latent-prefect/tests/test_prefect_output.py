"""What `latent run` prints (issue 12.4): the summary says what ran, Prefect's per-run chatter is
for `-v`; what the user's code logs is always shown. A flow file run as a script keeps Prefect's
lines: it has no summary to say what ran instead.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from project_dir import ProjectDir, child_env

CHATTY = """
from latent.prefect import flow, logger, task

@task("double", rows="task_runs")
def double(x):
    return 2 * x

@flow("inner")
def inner():
    return 1

@flow("chatty")
def chatty():
    logger.info("the user's own line")
    inner()
    return [f.result() for f in double.map(range(4))]

if __name__ == "__main__":
    chatty()
"""

CHATTER = ("Beginning flow run", "Beginning subflow run", "Finished in state", "View at ")


def _chatty(project: ProjectDir) -> None:
    project.flow("chatty", CHATTY)


def _run(project: ProjectDir, *command: str) -> str:
    """Run a command in the project as a user would: Prefect's default INFO level (the test
    session turns it down to WARNING for the processes it starts)."""
    done = subprocess.run(
        command,
        cwd=project.root,
        capture_output=True,
        text=True,
        timeout=240,
        env={**child_env(), "PREFECT_LOGGING_LEVEL": "INFO", "COLUMNS": "200"},
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    return out


def _latent(project: ProjectDir, *args: str) -> str:
    return _run(project, str(Path(sys.executable).parent / "latent"), *args)


def test_latent_run_shows_the_summary_not_prefects_per_run_lines(project: ProjectDir) -> None:
    _chatty(project)
    out = _latent(project, "run", "chatty")
    assert "the user's own line" in out
    assert "chatty: completed" in out and "Prefect UI: http" in out
    assert [line for line in CHATTER if line in out] == [], out


def test_latent_run_verbose_shows_prefects_lines(project: ProjectDir) -> None:
    _chatty(project)
    out = _latent(project, "run", "chatty", "-v")
    assert "Beginning flow run" in out and "Beginning subflow run" in out
    assert out.count("Finished in state Completed()") >= 4 + 2  # four task runs, two flows
    assert "the user's own line" in out


def test_a_flow_file_run_as_a_script_keeps_prefects_account_of_the_run(
    project: ProjectDir,
) -> None:
    _chatty(project)
    out = _run(project, sys.executable, "flows/chatty/flow.py")
    assert "Beginning flow run" in out and "Finished in state Completed()" in out
    assert "the user's own line" in out and "Traceback" not in out
