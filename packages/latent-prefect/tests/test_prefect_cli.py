"""The `latent` command, run in-process with Typer's runner (the console script's code)."""

from __future__ import annotations

import json
import subprocess
import sys

from project_dir import ProjectDir
from typer.testing import CliRunner

from latent.prefect.cli import app

runner = CliRunner()

FLOW = """
from datetime import timedelta
from latent.prefect import checkpoint, flow, params, task

@task("grade", output="grades")
def grade(scores: list) -> dict:
    count("grade")

    @checkpoint
    def judge(score: int, bar: int) -> bool:
        count("judge", "judge")
        return score >= bar

    return {"passed": [judge(s, params.grading["bar"]) for s in scores]}

@task("fleeting", cache_expiration=timedelta(seconds=0))
def fleeting() -> int:
    return 1

@flow("exam")
def exam():
    fleeting()
    return grade([40, 60, 80])
"""


def _exam(project: ProjectDir) -> None:
    project.flow(
        "exam",
        FLOW,
        parameters={"grading": {"bar": 50, "curve": "none"}},
        catalog={"grades": {"type": "json", "filepath": "data/exam/grades.json"}},
    )


def _grades(project: ProjectDir) -> list[bool]:
    return json.loads((project.root / "data/exam/grades.json").read_text())["passed"]


def test_run_prints_a_summary_and_takes_overrides(project: ProjectDir) -> None:
    _exam(project)
    result = runner.invoke(app, ["run", "exam"])
    assert result.exit_code == 0, result.output
    assert "grade" in result.output and "Completed" in result.output
    assert _grades(project) == [False, True, True]

    again = runner.invoke(app, ["run", "exam"])
    assert again.exit_code == 0, again.output
    assert "Cached" in again.output
    assert project.calls().count("grade") == 1

    override = runner.invoke(app, ["run", "exam", "--param", "grading.bar=70"])
    assert override.exit_code == 0, override.output
    assert _grades(project) == [False, False, True]
    assert project.calls().count("grade") == 2  # it reads grading: re-runs


def test_run_unknown_flow_lists_the_flows(project: ProjectDir) -> None:
    _exam(project)
    result = runner.invoke(app, ["run", "nope"])
    assert result.exit_code == 2
    assert "nope" in result.output and "exam" in result.output


def test_flows_lists_flows_and_parameters(project: ProjectDir) -> None:
    _exam(project)
    result = runner.invoke(app, ["flows"])
    assert result.exit_code == 0, result.output
    assert "exam" in result.output and "grading" in result.output


def test_registry_formats(project: ProjectDir) -> None:
    _exam(project)
    missing = runner.invoke(app, ["registry"])
    assert missing.exit_code == 1 and "run a flow first" in missing.output
    assert runner.invoke(app, ["run", "exam"]).exit_code == 0
    ascii_tree = runner.invoke(app, ["registry"])
    assert "📦 Flow: exam" in ascii_tree.output
    assert "⚙️  grade" in ascii_tree.output and "out: grades" in ascii_tree.output
    plain = runner.invoke(app, ["registry", "--no-emoji"])
    assert "Flow: exam" in plain.output and "📦" not in plain.output
    assert "grade" in runner.invoke(app, ["registry", "--format", "mermaid"]).output
    assert "digraph" in runner.invoke(app, ["registry", "--format", "dot"]).output
    bad = runner.invoke(app, ["registry", "--format", "png"])
    assert bad.exit_code == 2 and "ascii, mermaid or dot" in bad.output


def test_cache_list_clear_prune_and_checkpoints(project: ProjectDir) -> None:
    _exam(project)
    assert runner.invoke(app, ["run", "exam"]).exit_code == 0
    assert project.calls("judge").count("judge") == 3

    listing = runner.invoke(app, ["cache", "list"])
    assert listing.exit_code == 0, listing.output
    assert "grade" in listing.output and "judge" in listing.output

    pruned = runner.invoke(app, ["cache", "prune"])
    assert pruned.exit_code == 0, pruned.output
    assert "Pruned 1 expired task result" in pruned.output  # `fleeting` expired at once

    cleared = runner.invoke(app, ["cache", "clear", "--task", "grade", "--yes"])
    # one call, one record (the first release counted the params-read record twice)
    assert "Removed 1 cached task result" in cleared.output
    assert runner.invoke(app, ["run", "exam"]).exit_code == 0
    assert project.calls().count("grade") == 2
    assert project.calls("judge").count("judge") == 3  # checkpoints answered the judge calls

    removed = runner.invoke(app, ["checkpoints", "clear", "--yes"])
    assert "Removed 3 checkpoint entries" in removed.output
    assert runner.invoke(app, ["cache", "clear", "--yes"]).exit_code == 0
    assert runner.invoke(app, ["run", "exam"]).exit_code == 0
    assert project.calls("judge").count("judge") == 6


def test_new_flow_scaffolds_a_runnable_flow(project: ProjectDir) -> None:
    created = runner.invoke(app, ["new", "flow", "hello"])
    assert created.exit_code == 0, created.output
    for name in ("flow.py", "parameters.yaml", "catalog.yaml"):
        assert (project.root / "flows/hello" / name).exists()
    again = runner.invoke(app, ["new", "flow", "hello"])
    assert again.exit_code == 2 and "already exists" in again.output
    assert runner.invoke(app, ["new", "flow", "not-valid"]).exit_code == 2
    ran = runner.invoke(app, ["run", "hello"])
    assert ran.exit_code == 0, ran.output
    assert "say" in ran.output


SCRIPT_FLOW = """
from latent.prefect import checkpoint, flow, task


@task("square_all")
def square_all(items: list[int]) -> list[int]:
    @checkpoint
    def square(item: int) -> int:
        count(f"square-{item}")
        return item * item

    return [square(i) for i in items]


@task("total")
def total(values: list[int]) -> int:
    count("total")
    return sum(values)


@flow("script")
def script() -> int:
    return total(square_all([1, 2, 3]))


if __name__ == "__main__":
    print("result", script())
"""


def test_latent_run_and_the_file_run_as_a_script_share_cache_and_checkpoints(
    project: ProjectDir,
) -> None:
    """`latent run` loads flows/script/flow.py as one module, `python flows/script/flow.py`
    runs it as `__main__`: both name its code `flows.script.flow`, so the second runs nothing."""
    path = project.flow("script", SCRIPT_FLOW)
    project.latent("run", "script")
    ran = project.calls()
    assert sorted(ran) == ["square-1", "square-2", "square-3", "total"]

    script = subprocess.run(
        [sys.executable, str(path)], cwd=project.root, capture_output=True, text=True, timeout=240
    )
    assert script.returncode == 0, script.stderr
    assert "result 14" in script.stdout
    assert project.calls() == ran  # nothing executed again

    project.write("flows/script/flow.py", SCRIPT_FLOW.replace("item * item", "item * item + 0"))
    project.latent("run", "script")  # an edit is still seen; `total` gets the same input
    assert sorted(project.calls()[len(ran) :]) == ["square-1", "square-2", "square-3"]
