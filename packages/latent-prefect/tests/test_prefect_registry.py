"""The registry is the pipeline (issue 14), through `latent run` / `latent registry` and flows
called from Python: each run replaces its flow's part, cross-flow datasets join the flows, and a
new process draws the project's saved registry.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from project_dir import ProjectDir, child_env
from typer.testing import CliRunner

from latent.prefect.cli import app
from latent.registry import TaskRegistry

runner = CliRunner()

PREPARE = """
from latent.prefect import flow, task


@task("split", output="train_set")
def split() -> dict:
    return {"rows": [1, 2, 3]}


@task("audit")
def audit(data: dict) -> int:
    return len(data["rows"])


@flow("prepare")
def prepare():
    audit(split())
"""

TRAIN = """
from latent.prefect import flow, task


@task("fit", output="model")
def fit(data: dict) -> dict:
    return {"size": len(data["rows"])}


@flow("train", input=["prepare.train_set"], output=["report"])
def train(data):
    return {"model": fit(data)}
"""


def _project(project: ProjectDir) -> None:
    def json_ds(path: str) -> dict[str, str]:
        return {"type": "json", "filepath": path}

    project.flow("prepare", PREPARE, catalog={"train_set": json_ds("data/prepare/train_set.json")})
    project.flow(
        "train",
        TRAIN,
        catalog={
            "model": json_ds("data/train/model.json"),
            "report": json_ds("data/train/report.json"),
        },
    )


def mermaid_edges(text: str) -> set[tuple[str, str, str]]:
    """(from label, arrow, to label) of every Mermaid edge: the node ids are not the point."""
    labels = dict(re.findall(r'^\s*(?:subgraph )?(\w+)\[\(?"([^"]*)"\)?\]$', text, re.M))
    return {
        (labels[a], arrow, labels[b])
        for a, arrow, b in re.findall(r"^\s*(\w+) (-->|-\.->) (\w+)$", text, re.M)
    }


def _registry(*args: str) -> str:
    result = runner.invoke(app, ["registry", *args])
    assert result.exit_code == 0, result.output
    return result.output


def test_latent_registry_joins_flows_through_cross_flow_datasets(project: ProjectDir) -> None:
    _project(project)
    result = runner.invoke(app, ["run", "prepare", "train"])
    assert result.exit_code == 0, result.output

    edges = mermaid_edges(_registry("--format", "mermaid"))
    assert edges == {
        # prepare's split writes prepare.train_set and hands its value to audit (a data edge)
        ("split", "-->", "train_set"),
        ("split", "-.->", "audit"),
        # the train flow loads prepare.train_set as its input and passes it to fit
        ("train_set", "-->", "fit"),
        ("fit", "-->", "model"),
        # the flow's output `report` holds fit's result
        ("fit", "-->", "report"),
    }
    assert "digraph" in _registry("--format", "dot")


def test_a_rerun_replaces_the_flows_part_of_the_saved_registry(project: ProjectDir) -> None:
    _project(project)
    assert runner.invoke(app, ["run", "prepare", "train"]).exit_code == 0
    assert "audit" in _registry()

    project.write("flows/prepare/flow.py", PREPARE.replace("    audit(split())", "    split()"))
    result = runner.invoke(app, ["run", "prepare"])
    assert result.exit_code == 0, result.output

    tree = _registry("--no-emoji")
    assert "audit" not in tree  # removed from the flow: gone from the picture
    assert "Flow: train" in tree and "├── fit" in tree  # train did not run: its part is kept


def test_latent_registry_names_a_broken_registry_file(project: ProjectDir) -> None:
    _project(project)
    project.write(".latent/registry.json", "{not json")
    result = runner.invoke(app, ["registry"])
    assert result.exit_code == 1
    assert "is not valid JSON" in " ".join(result.output.split())
    assert "delete it" in result.output


def test_print_ascii_in_a_new_process_reads_the_saved_registry(project: ProjectDir) -> None:
    _project(project)
    project.load("prepare")()
    in_process = TaskRegistry.render_ascii()
    assert "split" in in_process

    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from latent.registry import TaskRegistry\nTaskRegistry.print_ascii()",
        ],
        cwd=project.root,
        capture_output=True,
        text=True,
        timeout=120,
        env=child_env(),
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == in_process
    assert "out: train_set" in proc.stdout


@pytest.mark.slow
def test_the_example_pipeline_picture_joins_both_flows_by_answer_scored(
    tmp_path: Path, prefect_server: None
) -> None:
    example = Path(__file__).resolve().parents[3] / "examples" / "qa-eval"
    root = tmp_path / "qa-eval"
    shutil.copytree(example, root, ignore=shutil.ignore_patterns("__pycache__", ".latent"))
    for generated in ("data/answer", "data/metrics"):
        shutil.rmtree(root / generated, ignore_errors=True)
    latent = str(Path(sys.executable).parent / "latent")
    env = {**child_env(), "LATENT_MLFLOW_ENABLED": "0"}

    def run(*args: str) -> str:
        proc = subprocess.run(
            [latent, *args], cwd=root, capture_output=True, text=True, timeout=600, env=env
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout

    run("run", "answer", "metrics")
    edges = mermaid_edges(run("registry", "--format", "mermaid"))
    assert edges == {
        ("questions", "-->", "build_prompts"),
        ("build_prompts", "-.->", "answer_question"),
        ("questions", "-->", "score_answers"),
        ("score_answers", "-->", "scored"),
        ("answer", "-->", "answer.answers"),  # built in the flow's body from the answers
        # the metrics flow reads answer.scored and hands it to both of its tasks
        ("scored", "-->", "accuracy_by_group"),
        ("scored", "-->", "overall"),
        ("metrics", "-->", "metrics.summary"),  # a dict built in the flow's body
        ("accuracy_by_group", "-->", "by_category"),
    }


# The second task marks that it was called (so registered), then waits in its body for the other
# run (polled with a bound, no sleeping on a guess): both runs are mid-flow at once.
CONCURRENT = """
import time
from pathlib import Path
from latent.prefect import flow, task

def _until(check):
    deadline = time.monotonic() + 60
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError("the other run never got there")
        time.sleep(0.02)

def _text(path):
    return Path(path).read_text() if Path(path).exists() else ""

@task("{first}")
def first():
    return 1

@task("{second}")
def second(x):
    Path({mark!r}).touch()
    _until(lambda: {until})
    return x

@flow("{flow}")
def {flow}():
    return second(first())
"""


def _saved(project: ProjectDir) -> dict[str, list[str]]:
    import json

    flows = json.loads((project.root / ".latent/registry.json").read_text())["flows"]
    return {name: [t["name"] for t in entry["tasks"]] for name, entry in flows.items()}


def _run_on_threads(*calls: Any) -> None:
    errors: list[BaseException] = []

    def run(call: Any) -> None:
        try:
            call()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    assert not errors, errors


def test_two_projects_running_at_once_on_threads_keep_their_own_registry(
    project: ProjectDir, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One flow name in two projects, both mid-run at once: neither project's registry holds the
    other's tasks (issue 10.5: the registry was one class-level dict for the whole process)."""
    from latent.config import Project
    from latent.prefect.cli import load_flow

    other = ProjectDir(project.root.parent / "other")
    shutil.copytree(project.root, other.root)
    monkeypatch.chdir(project.root.parent)  # each flow finds its project from its file
    a, b = project.root / "a.called", other.root / "b.called"
    for proj, tasks, mark, theirs in ((project, "ab", a, b), (other, "cd", b, a)):
        proj.flow(
            "pipeline",
            CONCURRENT.format(
                flow="pipeline",
                first=f"{tasks[0]}_first",
                second=f"{tasks[1]}_second",
                mark=str(mark),
                until=f"Path({str(theirs)!r}).exists()",
            ),
        )
    flows = [load_flow(Project(p.root), "pipeline") for p in (project, other)]
    _run_on_threads(*flows)
    assert _saved(project) == {"pipeline": ["a_first", "b_second"]}
    assert _saved(other) == {"pipeline": ["c_first", "d_second"]}


def test_two_flows_of_one_project_running_at_once_both_land_whole_in_its_registry(
    project: ProjectDir,
) -> None:
    """`right` is mid-run when `left` saves the project's registry: `right` keeps its tasks."""
    from latent.config import Project
    from latent.prefect.cli import load_flow

    saved = project.root / ".latent/registry.json"
    right_called = project.root / "right.called"
    project.flow(
        "left",
        CONCURRENT.format(
            flow="left",
            first="l_first",
            second="l_second",
            mark=str(project.root / "left.called"),
            until=f"Path({str(right_called)!r}).exists()",
        ),
    )
    project.flow(
        "right",
        CONCURRENT.format(
            flow="right",
            first="r_first",
            second="r_second",
            mark=str(right_called),
            until=f"'l_second' in _text({str(saved)!r})",
        ),
    )
    root = Project(project.root)
    _run_on_threads(load_flow(root, "left"), load_flow(root, "right"))
    assert _saved(project) == {"left": ["l_first", "l_second"], "right": ["r_first", "r_second"]}
    # the process-wide registry that `print_ascii()` draws after the runs has both too
    assert {"left", "right"} <= set(TaskRegistry.to_dict()["flows"])
