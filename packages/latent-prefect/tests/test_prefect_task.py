"""@task: retries, error context, map/submit, calls outside a flow."""

from __future__ import annotations

import pickle

import pytest
from project_dir import ProjectDir

from latent.observe import TaskExecutionError


def test_retries_three_times_by_default_then_error_context(project: ProjectDir) -> None:
    (project.root / "data/data.json").write_text('{"rows": 3}')
    project.write("config/catalog.yaml", "data:\n  type: json\n  filepath: data/data.json\n")
    project.flow(
        "failing",
        """
        from latent.prefect import flow, task

        @task("process", input="data", retry_delay_seconds=0)
        def process_task(data):
            count("attempt")
            raise ValueError("Processing failed!")

        @flow("failing")
        def failing():
            return process_task()
        """,
    )
    with pytest.raises(TaskExecutionError) as info:
        project.load("failing")()
    assert project.calls() == ["attempt"] * 4  # 1 + 3 retries
    error = info.value
    assert str(error) == (
        "Task 'process' failed.\n"
        "Original error: ValueError: Processing failed!\n"
        "Context: {'input': 'data', 'row_index': None}"
    )
    assert isinstance(error.__cause__, ValueError)
    assert error.inputs["data"] == {"rows": 3}
    again = pickle.loads(pickle.dumps(error))
    assert str(again) == str(error)


def test_retry_false_and_user_retries_win(project: ProjectDir) -> None:
    project.flow(
        "retrying",
        """
        from latent.prefect import flow, task

        @task("never", retry=False)
        def never():
            count("never")
            raise RuntimeError("boom")

        @task("twice", retries=1, retry_delay_seconds=0)
        def twice():
            count("twice")
            raise RuntimeError("boom")

        @flow("retrying")
        def retrying(which: str):
            return never() if which == "never" else twice()
        """,
    )
    flow_obj = project.load("retrying")
    with pytest.raises(TaskExecutionError, match="Task 'never' failed"):
        flow_obj("never")
    with pytest.raises(TaskExecutionError, match="Task 'twice' failed"):
        flow_obj("twice")
    assert project.calls().count("never") == 1
    assert project.calls().count("twice") == 2


def test_map_submit_and_unmapped(project: ProjectDir) -> None:
    project.flow(
        "parallel_flow",
        """
        from prefect.futures import wait
        from latent.prefect import flow, logger, task, unmapped

        @task("process_item")
        def process_item_task(item, idx):
            count(f"item-{idx}")
            logger.info(f"Processing item {idx}")
            return item * 2

        @task("add")
        def add(x, offsets):
            return x + sum(offsets)

        @flow("parallel_flow")
        def parallel_flow():
            items = [1, 2, 3, 4]
            futures = process_item_task.map(item=items, idx=range(len(items)))
            results = [f.result() for f in futures]
            more = add.map(results, offsets=unmapped([1, 1]))
            wait(more)
            single = add.submit(100, [0]).result()
            return results, [f.result() for f in more], single
        """,
    )
    flow_obj = project.load("parallel_flow")
    assert flow_obj() == ([2, 4, 6, 8], [4, 6, 8, 10], 100)
    assert sorted(project.calls()) == ["item-0", "item-1", "item-2", "item-3"]
    # second run: every mapped call is answered from the cache, no body runs
    assert flow_obj() == ([2, 4, 6, 8], [4, 6, 8, 10], 100)
    assert len(project.calls()) == 4


def test_task_outside_a_flow_is_a_cached_function(project: ProjectDir) -> None:
    project.write(
        "script.py",
        """
        from latent.prefect import task

        @task("double")
        def double(x):
            count(f"double-{x}")
            return 2 * x
        """,
    )
    import importlib.util

    spec = importlib.util.spec_from_file_location("script_mod", project.root / "script.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.double(2) == 4
    assert mod.double(2) == 4
    assert mod.double(3) == 6
    assert project.calls() == ["double-2", "double-3"]


def test_unknown_span_type_fails_at_decoration() -> None:
    from latent.prefect import task

    with pytest.raises(ValueError, match="LLMX"):

        @task("bad", span_type="LLMX")
        def bad() -> None:
            return None


def test_a_task_with_options_is_a_latent_task_that_runs_in_a_flow(project: ProjectDir) -> None:
    """Prefect's `Task.with_options` builds a plain `Task`; ours stays a LatentTask (named anew,
    caching and reporting under its new name)."""
    project.flow(
        "renamed",
        """
from latent.prefect import LatentTask, flow, task

@task("work")
def work(x: int) -> int:
    count("work")
    return 2 * x

quick = work.with_options(name="quick", retries=0)
assert isinstance(quick, LatentTask) and quick.spec.name == "quick"

@flow("renamed")
def renamed():
    return [work(1), quick(2), quick(2)]
""",
    )
    assert project.load("renamed")() == [2, 4, 4]
    assert project.calls() == ["work", "work"]  # quick(2) the second time: its cache
