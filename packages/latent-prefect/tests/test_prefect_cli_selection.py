"""`latent run --only/--from/--to` and `--dry-run`, as a Kedro user would use them.

A selection says which tasks may execute: the others are answered from the cache, and one with
nothing cached stops the run with one line. A dry run says per task whether it would run or hit
the cache, and why, with nothing run and nothing written.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from project_dir import ProjectDir, child_env
from typer.testing import CliRunner

from latent.prefect.cli import app
from latent.prefect.cli._app import console

runner = CliRunner()

# Defined out of call order on purpose: `audit` first. The run order is prepare, score,
# summarize, audit (what the registry records); before any run it is the definition order.
QA = """
from latent.prefect import flow, params, task

@task("audit")
def audit(items: list) -> int:
    count("audit")
    return len(items)

@task("prepare")
def prepare(items: list) -> list:
    count("prepare")
    return [i * 10 for i in items]

@task("score")
def score(row: int) -> int:
    count("score")
    return row + params.offset

@task("summarize", output="summary")
def summarize(scores: list) -> dict:
    count("summarize")
    return {"label": params.label, "total": sum(scores)}

@flow("qa")
def qa():
    rows = prepare(params.items)
    scores = score.map(rows)
    summary = summarize([f.result() for f in scores])
    audit(params.items)
    return summary
"""

ROWS = """
from latent.prefect import flow, params, task

@task("double")
def double(x: int) -> int:
    count("double")
    return x * 2

@task("add_up")
def add_up(values: list) -> int:
    count("add_up")
    return sum(values)

@task("report")
def report(total: int) -> str:
    count("report")
    return f"total {total}"

@flow("rows")
def rows():
    total = add_up([f.result() for f in double.map(params.items)])
    if total > 10:  # the flow body uses a result as data
        report(total)
    return total
"""


@pytest.fixture(autouse=True)
def _wide_console() -> Iterator[None]:
    """Table cells on one line each, as in a wide terminal (the runner's is 80 columns)."""
    width = console.width
    console.width = 200
    yield
    console.width = width


def _qa(project: ProjectDir) -> None:
    project.flow(
        "qa",
        QA,
        parameters={"items": [1, 2, 3], "offset": 0, "label": "a"},
        catalog={"summary": {"type": "json", "filepath": "data/summary.json"}},
    )


def _run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["run", *args])
    return result.exit_code, " ".join(result.output.replace("│", " ").split())


def _counts(project: ProjectDir) -> dict[str, int]:
    calls = project.calls()
    return {name: calls.count(name) for name in ("prepare", "score", "summarize", "audit")}


def _summary(project: ProjectDir) -> dict[str, object]:
    return json.loads((project.root / "data/summary.json").read_text())  # type: ignore[no-any-return]


def _baseline(project: ProjectDir) -> None:
    _qa(project)
    code, output = _run("qa")
    assert code == 0, output
    assert _counts(project) == {"prepare": 1, "score": 3, "summarize": 1, "audit": 1}


def test_only_runs_the_tasks_named_and_answers_the_others_from_the_cache(
    project: ProjectDir,
) -> None:
    _baseline(project)
    code, output = _run("qa", "--only", "summarize", "-p", "label=b")
    assert code == 0, output
    assert _counts(project) == {"prepare": 1, "score": 3, "summarize": 2, "audit": 1}
    assert _summary(project) == {"label": "b", "total": 60}


def test_from_runs_a_task_and_everything_after_it(project: ProjectDir) -> None:
    _baseline(project)
    code, output = _run("qa", "--from", "score", "-p", "offset=1")
    assert code == 0, output
    # prepare (before score) came from the cache; score's rows and summarize re-ran
    assert _counts(project) == {"prepare": 1, "score": 6, "summarize": 2, "audit": 1}
    assert _summary(project) == {"label": "a", "total": 63}


def test_to_runs_everything_up_to_a_task(project: ProjectDir) -> None:
    _baseline(project)
    code, output = _run("qa", "--to", "summarize", "-p", "label=c")
    assert code == 0, output
    assert _counts(project) == {"prepare": 1, "score": 3, "summarize": 2, "audit": 1}


def test_a_task_outside_the_selection_with_nothing_cached_stops_the_run(
    project: ProjectDir,
) -> None:
    _baseline(project)
    code, output = _run("qa", "--to", "summarize", "-p", "items=[1,2,3,4]")
    assert code == 2, output
    assert (
        "error: task 'audit' is not selected (--to summarize) and has no cached result for "
        "these inputs; run without --to, or add it with --only audit" in output
    )
    assert output.count("is not selected") == 1  # once, not again by Prefect's logger
    assert _counts(project)["audit"] == 1  # it never ran

    code, output = _run("qa", "--only", "summarize", "-p", "offset=5")
    assert code == 2, output
    assert (
        "task 'score' is not selected (--only summarize) and has no cached result for 3 of its "
        "3 rows; add it with --only summarize,score" in output
    )
    # before stopping, the first run ran what it selected: prepare, the new row, summarize
    assert _counts(project) == {"prepare": 2, "score": 4, "summarize": 2, "audit": 1}


def test_an_unknown_task_name_fails_before_anything_runs(project: ProjectDir) -> None:
    _qa(project)
    code, output = _run("qa", "--from", "scroe")
    assert code == 2, output
    assert "--from scroe: no task 'scroe'" in output and "Did you mean 'score'?" in output
    assert project.calls() == []
    code, output = _run("qa", "--only", "prepare,sumarize")
    assert code == 2 and "Did you mean 'summarize'?" in output, output
    assert project.calls() == []


def test_from_and_to_follow_the_last_run_else_the_definition_order(project: ProjectDir) -> None:
    _qa(project)
    # before any run: the file's order, where audit comes first, so --from prepare leaves it out
    code, output = _run("qa", "--from", "prepare")
    assert code == 2, output
    assert "task 'audit' is not selected (--from prepare)" in output
    assert _counts(project) == {"prepare": 1, "score": 3, "summarize": 1, "audit": 0}
    code, output = _run("qa")
    assert code == 0, output
    # the last run called audit last: --from prepare now selects it too
    code, output = _run("qa", "--from", "prepare", "-p", "items=[5]")
    assert code == 0, output
    assert _counts(project) == {"prepare": 2, "score": 4, "summarize": 2, "audit": 2}


def _latent_dir_state(project: ProjectDir) -> dict[str, float]:
    return {
        str(p.relative_to(project.root)): p.stat().st_mtime_ns
        for p in [*(project.root / ".latent").rglob("*"), *(project.root / "data").rglob("*")]
        if p.is_file() and "fingerprint" not in p.name
    }


def test_dry_run_after_a_param_change_shows_what_would_run_and_why(project: ProjectDir) -> None:
    _baseline(project)
    before = _latent_dir_state(project)
    summary = (project.root / "data/summary.json").read_text()
    code, output = _run("qa", "--dry-run", "-p", "label=b")
    assert code == 0, output
    assert "qa prepare cached 1" in output
    assert "qa score cached 3 cached / 0 would run" in output
    assert "qa summarize would run 1 params: key 'label' changed" in output
    assert "qa audit cached 1" in output
    assert _counts(project) == {"prepare": 1, "score": 3, "summarize": 1, "audit": 1}
    assert (project.root / "data/summary.json").read_text() == summary
    assert _latent_dir_state(project) == before
    assert "Prefect UI" not in output


def test_dry_run_counts_mapped_rows_and_stops_where_the_body_uses_a_result(
    project: ProjectDir,
) -> None:
    project.flow("rows", ROWS, parameters={"items": [1, 2, 3, 4]})
    code, output = _run("rows")
    assert code == 0, output
    code, output = _run("rows", "--dry-run", "-p", "items=[1,2,3,4,5,6]")
    assert code == 0, output
    assert "rows double would run 4 cached / 2 would run args: argument 'x' changed" in output
    assert "rows add_up would run 1 upstream 'double' would run" in output
    assert "rows report unknown - not reached: the dry run stopped after 'add_up'" in output
    assert "used the result of 'add_up', which would run, as data" in output
    assert project.calls().count("double") == 4


def _latent_without_server(project: ProjectDir, *args: str) -> subprocess.CompletedProcess[str]:
    """`latent` pointed at a dead API address: a real run would fail to reach it (exit 1)."""
    env = {**child_env(), "PREFECT_API_URL": "http://127.0.0.1:9/api", "COLUMNS": "200"}
    return subprocess.run(
        [str(Path(sys.executable).parent / "latent"), *args],
        cwd=project.root,
        capture_output=True,
        text=True,
        timeout=240,
        env=env,
    )


@pytest.mark.slow  # two `latent` processes (~10 s on a busy machine)
def test_dry_run_and_task_names_need_no_prefect_server(project: ProjectDir) -> None:
    _qa(project)
    typo = _latent_without_server(project, "run", "qa", "--to", "sumarize")
    assert typo.returncode == 2, typo.stdout + typo.stderr  # not 1: the server was never asked
    assert "Did you mean 'summarize'?" in typo.stderr
    done = _latent_without_server(project, "run", "qa", "--dry-run")
    assert done.returncode == 0, done.stdout + done.stderr
    said = " ".join(done.stdout.replace("│", " ").split())
    assert "qa prepare would run 1 never stored before" in said
    assert "qa score would run ? (upstream) upstream 'prepare' would run" in said
    assert project.calls() == []
    assert not (project.root / "data/summary.json").exists()
    assert not os.path.exists(project.root / ".latent" / "registry.json")


PIPELINE = """
from latent.prefect import flow, params, task

@task("clean_rows")
def clean_rows(rows: list) -> list:
    count("clean_rows")
    return [r for r in rows if r > 1]

@flow("clean")
def clean(rows: list) -> list:
    return clean_rows(rows)

@task("measure")
def measure(rows: list) -> int:
    count("measure")
    return len(rows)

@flow("pipeline")
def pipeline():
    kept = clean(params.rows)
    return measure.submit(kept).result()
"""


def test_dry_run_follows_subflows_and_submit_without_running_them(project: ProjectDir) -> None:
    project.flow("pipeline", PIPELINE, parameters={"rows": [1, 2, 3]})
    code, output = _run("pipeline")
    assert code == 0, output
    registry = project.root / ".latent" / "registry.json"
    saved = registry.stat().st_mtime_ns
    code, output = _run("pipeline", "--dry-run")
    assert code == 0, output
    assert "clean clean_rows cached 1" in output and "pipeline measure cached 1" in output
    code, output = _run("pipeline", "--dry-run", "-p", "rows=[0,5,6]")
    assert code == 0, output
    assert "clean clean_rows would run 1 args: argument 'rows' changed" in output
    assert "pipeline measure would run 1 upstream 'clean_rows' would run" in output
    assert project.calls() == ["clean_rows", "measure"]
    assert registry.stat().st_mtime_ns == saved


CHAT = """
import asyncio
from latent.prefect import flow, params, task

@task("ask")
async def ask(question: str) -> str:
    count("ask")
    return question.upper() + params.suffix

@flow("chat")
async def chat():
    return list(await asyncio.gather(*(ask(q) for q in params.questions)))
"""


def test_dry_run_of_an_async_flow(project: ProjectDir) -> None:
    project.flow("chat", CHAT, parameters={"questions": ["a", "b"], "suffix": "?"})
    code, output = _run("chat")
    assert code == 0, output
    code, output = _run("chat", "--dry-run", "-p", "suffix=!")
    assert code == 0, output
    assert "chat ask would run 0 cached / 2 would run params: key 'suffix' changed" in output
    assert project.calls() == ["ask", "ask"]


def test_dry_run_with_a_selection_shows_where_the_run_would_stop(project: ProjectDir) -> None:
    _baseline(project)
    code, output = _run("qa", "--dry-run", "--only", "summarize", "-p", "offset=5")
    assert code == 0, output
    assert (
        "qa score not selected 0 cached / 0 would run / 3 not selected task 'score' is not "
        "selected (--only summarize) and may have no cached result; add it with --only "
        "summarize,score; params: key 'offset' changed" in output
    )
    assert _counts(project) == {"prepare": 1, "score": 3, "summarize": 1, "audit": 1}
