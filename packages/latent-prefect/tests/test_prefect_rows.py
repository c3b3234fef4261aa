"""The row engine under `.map`: batches Prefect can record, rows that keep their own identity."""

from __future__ import annotations

import asyncio

import pytest
from project_dir import ProjectDir

from latent.observe import TaskExecutionError

ROWS_FLOW = """
from latent.prefect import flow, task

@task("judge", retry=False)
def judge(row: dict) -> int:
    count("judge")
    if row["id"] == 3:
        raise ValueError("row 3 is malformed")
    return row["id"] * 10

@flow("judging")
def judging():
    futures = judge.map([{"id": i} for i in range(250)])
    out = []
    for f in futures:
        try:
            out.append(f.result())
        except Exception as exc:
            out.append(type(exc).__name__ + ":" + str(exc.context["row_index"]))
    return out
"""


def test_a_failing_row_fails_its_future_not_its_neighbours(project: ProjectDir) -> None:
    project.flow("judging", ROWS_FLOW)
    result = project.load("judging")()
    assert result[3] == "TaskExecutionError:3"
    assert [r for i, r in enumerate(result) if i != 3] == [i * 10 for i in range(250) if i != 3]
    assert len(project.calls()) == 250
    # the second run: every good row is cached, only the failing row runs again
    again = project.load("judging")()
    assert again == result
    assert len(project.calls()) == 251


def _task_run_names() -> list[str]:
    """The task runs of the latest flow run, by name."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async def task_runs() -> list:
        async with get_client() as client:
            runs = await client.read_flow_runs(limit=1, sort="START_TIME_DESC")
            flow_filter = FlowRunFilter(id=FlowRunFilterId(any_=[runs[0].id]))
            return await client.read_task_runs(flow_run_filter=flow_filter, limit=200)

    return sorted(t.name for t in asyncio.run(task_runs()))


def test_a_map_is_a_bounded_number_of_named_prefect_task_runs(project: ProjectDir) -> None:
    project.flow("judging", ROWS_FLOW)
    project.load("judging")()
    names = _task_run_names()
    assert 1 <= len(names) <= 100
    # named by their rows (the server may briefly hold a run's first, generated name)
    labelled = [name for name in names if name.startswith("judge[")]
    assert len(labelled) >= len(names) - 2, names
    # 250 rows: batches of 100, each submitted as soon as its rows were looked up
    assert "judge[200-249]" in names and len(names) == 3, names


LARGE_MAP_FLOW = """
from latent.prefect import flow, task

@task("echo", retry=False, cache=False)
def echo(x: int) -> int:
    return x

@flow("large")
def large():
    return sum(f.result() for f in echo.map(range(3000)))
"""


def test_a_large_map_in_the_flows_process_is_a_lead_batch_and_ten_more(
    project: ProjectDir,
) -> None:
    # each task run costs the server and the flow CPU the rows wait for: in the flow's
    # process a large map is 100 rows first (they start while the rest are looked up), then
    # a tenth of the map at a time
    project.flow("large", LARGE_MAP_FLOW)
    assert project.load("large")() == sum(range(3000))
    names = [name for name in _task_run_names() if name.startswith("echo[")]
    assert names[:2] == ["echo[0-99]", "echo[100-399]"], names
    assert "echo[2800-2999]" in names and len(names) == 11, names


def test_row_spans_are_named_by_index_and_id(project: ProjectDir, tmp_path) -> None:
    project.write(
        "config/latent.toml",
        'environment = "dev"\n\n[mlflow]\nenabled = true\n',
    )
    project.flow(
        "judging",
        ROWS_FLOW.replace("range(250)", "range(5)").replace('if row["id"] == 3', "if False"),
    )
    project.load("judging")()
    import mlflow
    from mlflow import MlflowClient

    from latent.config import Project

    client = MlflowClient(tracking_uri=Project.discover().tracking_uri)
    experiment = client.get_experiment_by_name("judging")
    assert experiment is not None
    traces = client.search_traces(locations=[experiment.experiment_id])
    names = sorted(s.name for s in traces[0].data.spans)
    assert {"judge[0] 0", "judge[4] 4"} <= set(names), names
    mlflow.set_tracking_uri(None)


CACHED_MAP = """
from latent.prefect import flow, task

@task("judge", retry=False)
def judge(row: dict) -> int:
    count("judge")
    return row["id"] * 10

@flow("judging")
def judging():
    futures = judge.map([{"id": i} for i in range(60)])
    return [f.result() for f in futures], sorted({f.state.name for f in futures})
"""


def test_a_cached_map_counts_its_hits_once_and_logs_no_per_row_points(
    project: ProjectDir,
) -> None:
    project.write("config/latent.toml", 'environment = "dev"\n\n[mlflow]\nenabled = true\n')
    project.flow("judging", CACHED_MAP)
    first, first_states = project.load("judging")()
    again, again_states = project.load("judging")()
    assert again == first == [i * 10 for i in range(60)]
    assert (first_states, again_states) == (["Completed"], ["Cached"])
    assert len(project.calls()) == 60
    import mlflow
    from mlflow import MlflowClient

    from latent.config import Project

    client = MlflowClient(tracking_uri=Project.discover().tracking_uri)
    experiment = client.get_experiment_by_name("judging")
    assert experiment is not None
    cold, warm = sorted(
        client.search_runs([experiment.experiment_id]), key=lambda r: r.info.start_time
    )
    # the cold run: one duration point per row; the warm one: the hits, counted, no points
    assert len(client.get_metric_history(cold.info.run_id, "task.judge.duration")) == 60
    assert warm.data.metrics["task.judge.cache_hits"] == 60
    assert warm.data.metrics["cache.hits"] == 60
    assert "task.judge.duration" not in warm.data.metrics
    mlflow.set_tracking_uri(None)


LIMITED = """
import threading, time
from latent.prefect import flow, task

_lock = threading.Lock()
_now = [0]
_peak = [0]

def _enter():
    with _lock:
        _now[0] += 1
        _peak[0] = max(_peak[0], _now[0])

def _leave():
    with _lock:
        _now[0] -= 1

@task("embed", limit="model", retry=False)
def embed(x: int) -> int:
    _enter()
    time.sleep(0.02)
    _leave()
    return x

@task("rerank", limit="model", retry=False)
def rerank(x: int) -> int:
    _enter()
    time.sleep(0.02)
    _leave()
    return -x

@flow("shared")
def shared():
    a = embed.map(range(30))
    b = rerank.map(range(30))
    return [f.result() for f in a] + [f.result() for f in b] + [_peak[0]]
"""


def test_a_named_limit_is_shared_by_two_tasks_mapped_at_once(project: ProjectDir) -> None:
    project.write(
        "config/latent.toml",
        'environment = "dev"\n\n[mlflow]\nenabled = false\n\n[limits.model]\nconcurrency = 3\n',
    )
    project.flow("shared", LIMITED)
    result = project.load("shared")()
    assert result[:60] == list(range(30)) + [-x for x in range(30)]
    assert 2 <= result[60] <= 3  # both maps ran at once, never more than the budget


def test_an_unknown_limit_name_is_a_configuration_error(project: ProjectDir) -> None:
    project.flow("shared", LIMITED)
    with pytest.raises(Exception, match=r"\[limits\.model\]"):
        project.load("shared")()


def test_rows_task_runs_keeps_one_task_run_per_row(project: ProjectDir) -> None:
    code = """
from latent.prefect import flow, task

@task("square", rows="task_runs")
def square(x):
    count("square")
    return x * x

@flow("squares")
def squares():
    return [f.result() for f in square.map(range(6))]
"""
    project.flow("squares", code)
    assert project.load("squares")() == [0, 1, 4, 9, 16, 25]
    assert project.load("squares")() == [0, 1, 4, 9, 16, 25]
    assert len(project.calls()) == 6


def test_a_failed_row_raises_its_task_execution_error(project: ProjectDir) -> None:
    code = """
from latent.prefect import flow, task

@task("risky", retry=False)
def risky(x):
    if x == 2:
        raise KeyError("missing field")
    return x

@flow("risks")
def risks():
    return [f.result() for f in risky.map(range(4))]
"""
    project.flow("risks", code)
    with pytest.raises(TaskExecutionError) as caught:
        project.load("risks")()
    assert "Task 'risky' failed" in str(caught.value)
    assert caught.value.context["row_index"] == 2
