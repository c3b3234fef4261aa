"""`async def` tasks and flows: everything a sync task does, awaited."""

from __future__ import annotations

import asyncio

import pytest
from project_dir import ProjectDir

from latent.observe import TaskExecutionError

ASYNC_FLOW = """
import asyncio
from pathlib import Path
from latent.prefect import flow, params, task

@task("ask", retry_delay_seconds=0)
async def ask(question: str) -> str:
    count("ask")
    await asyncio.sleep(0.01)
    return params.prefix + question.upper()

@task("shout", retry_delay_seconds=0)
async def shout(text: str) -> str:
    count("shout")
    await asyncio.sleep(0)
    return text + "!"

@flow("inner")
async def inner(text: str) -> str:
    return await shout(text)

@flow("asking")
async def asking() -> dict:
    one = await ask("a")
    gathered = await asyncio.gather(ask("b"), ask("c"))
    mapped = [f.result() for f in ask.map(["d", "e", "f"])]
    submitted = ask.submit("g").result()
    nested = await inner("h")
    return {"one": one, "gathered": gathered, "mapped": mapped, "submitted": submitted,
            "nested": nested}
"""

EXPECTED = {
    "one": "q:A",
    "gathered": ["q:B", "q:C"],
    "mapped": ["q:D", "q:E", "q:F"],
    "submitted": "q:G",
    "nested": "h!",
}


def test_async_tasks_in_an_async_flow_every_way_and_cached_across_processes(
    project: ProjectDir,
) -> None:
    project.flow("asking", ASYNC_FLOW, parameters={"prefix": "q:"})
    first = project.latent("run", "asking")
    assert sorted(project.calls()) == ["ask"] * 7 + ["shout"]
    second = project.latent("run", "asking")
    assert sorted(project.calls()) == ["ask"] * 7 + ["shout"]  # nothing ran again
    assert "Cached" in second.stdout and "Failed" not in first.stdout
    assert "p50 (s)" in first.stdout and "p95 (s)" in first.stdout  # row latency per task
    assert asyncio.run(project.load("asking")()) == EXPECTED


SYNC_FLOW_CALLING_ASYNC = """
import asyncio
from latent.prefect import flow, task

@task("double")
async def double(x: int) -> int:
    count("double")
    await asyncio.sleep(0)
    return 2 * x

@flow("plain")
def plain() -> list:
    return [double(1), double.submit(2).result(), *[f.result() for f in double.map([3, 4])]]
"""


def test_an_async_task_called_from_a_sync_flow_runs_to_completion(project: ProjectDir) -> None:
    project.flow("plain", SYNC_FLOW_CALLING_ASYNC)
    assert project.load("plain")() == [2, 4, 6, 8]
    assert project.load("plain")() == [2, 4, 6, 8]
    assert project.calls() == ["double"] * 4


def test_an_async_task_outside_any_flow_is_awaited_with_caching(project: ProjectDir) -> None:
    project.flow("plain", SYNC_FLOW_CALLING_ASYNC)
    module_flow = project.load("plain")
    import sys

    double = vars(sys.modules[module_flow.fn.__module__])["double"]
    assert asyncio.run(double(21)) == 42
    assert asyncio.run(double(21)) == 42
    assert project.calls() == ["double"]


FLAKY_ASYNC = """
import asyncio
from pathlib import Path
from latent.prefect import flow, task

MARK = Path(__file__).parent / "failed-once"

@task("flaky", retries=2, retry_delay_seconds=0)
async def flaky(x: int) -> int:
    count("flaky")
    if not MARK.exists():
        MARK.write_text("1")
        raise ConnectionError("the model endpoint reset the connection")
    return x + 1

@task("broken", retry=False)
async def broken(x: int) -> int:
    raise ValueError(f"cannot score {x}")

@flow("flaky_flow")
async def flaky_flow() -> int:
    return await flaky(1)

@flow("broken_flow")
async def broken_flow() -> int:
    return await broken(7)
"""


def test_async_retries_and_error_text(project: ProjectDir) -> None:
    project.flow("flaky_flow", FLAKY_ASYNC)
    project.flow("broken_flow", FLAKY_ASYNC)
    assert asyncio.run(project.load("flaky_flow")()) == 2
    assert project.calls() == ["flaky", "flaky"]
    with pytest.raises(TaskExecutionError) as caught:
        asyncio.run(project.load("broken_flow")())
    text = str(caught.value)
    assert "Task 'broken' failed" in text and "ValueError: cannot score 7" in text


def test_sync_and_async_versions_of_the_same_code_share_the_cache(project: ProjectDir) -> None:
    sync = """
from latent.prefect import flow, task

@task("upper")
def upper(text: str) -> str:
    count("upper")
    return text.upper()

@flow("texts")
def texts():
    return [f.result() for f in upper.map(["a", "b"])]
"""
    project.flow("texts", sync)
    assert project.load("texts")() == ["A", "B"]
    project.flow("texts", sync.replace("def upper", "async def upper"))
    assert project.load("texts")() == ["A", "B"]
    assert project.calls() == ["upper", "upper"]


def test_mlflow_log_metric_in_an_async_task_lands_in_the_flows_run(project: ProjectDir) -> None:
    from mlflow import MlflowClient

    from latent.config import Project

    project.write("config/latent.toml", 'environment = "dev"\n')
    project.flow(
        "scored",
        """
import asyncio
import mlflow
from latent.prefect import flow, log_metric, task

@task("score", cache=False)
async def score(x: float) -> float:
    await asyncio.sleep(0)
    mlflow.log_metric("plain_score", x)
    log_metric("latent_score", x * 2)
    return x

@flow("scored")
async def scored() -> float:
    return sum(await asyncio.gather(score(0.25), score(0.5)))
""",
    )
    assert asyncio.run(project.load("scored")()) == 0.75
    client = MlflowClient(tracking_uri=Project.discover().tracking_uri)
    experiment = client.get_experiment_by_name("scored")
    assert experiment is not None
    (run,) = client.search_runs([experiment.experiment_id])
    plain = sorted(m.value for m in client.get_metric_history(run.info.run_id, "plain_score"))
    assert plain == [0.25, 0.5]
    assert run.data.metrics["latent_score"] in (0.5, 1.0)
    default = client.get_experiment_by_name("Default")
    assert default is None or client.search_runs([default.experiment_id]) == []
