"""The spec's @task examples, verbatim, run in a tiny project.

Where an example is only a task, it is called outside any flow (which works like calling the
function, with caching) unless it needs a flow (it reads `params`, or the point is Prefect's
retries): then a small harness flow calls it. Sections: "The @task Decorator", "Basic Task",
"Task with Catalog I/O", "Task with Custom Caching", "Task without Caching", "Enhanced Error
Context", "File-Based Caching (Batch)", "Disabling Caching", "Custom Cache Duration".
"""

from __future__ import annotations

import json
import logging
from datetime import datetime

import pandas as pd
import pytest
from spec_project import LogRecords, SpecProject

from latent.prefect import TaskExecutionError


def harness(flow_name: str, call: str) -> str:
    """A test-only flow that runs one task call and returns its value."""
    return f'@flow("{flow_name}")\ndef {flow_name}():\n    return {call}\n'


# ---------------------------------------------------------------------------------------------
# The @task Decorator

TASK_DECORATOR = """
from latent.prefect import task

@task(
    "task_name",                    # Required: task name
    input="input_dataset",          # Optional: input dataset name
    output="output_dataset",        # Optional: output dataset name
    cache=True,                     # Optional: enable caching (default: True)
    retry=True,                     # Optional: enable retries (default: True)
    span_type="CHAIN",              # Optional: MLflow span type (CHAIN, AGENT, TOOL, etc.)
    cache_expiration=timedelta(days=7),  # Optional: cache duration
    **task_kwargs                   # Optional: additional Prefect task options
)
def my_task(input_data):
    # Your task logic
    return output_data
"""


def _task_decorator_project(project: SpecProject) -> None:
    project.catalog(
        {
            "input_dataset": {"type": "json", "filepath": "data/input.json"},
            "output_dataset": {"type": "json", "filepath": "data/output.json"},
        }
    )
    (project.root / "data/input.json").write_text('{"question": "6 x 7?"}')
    project.flow_file(
        "tasks",
        TASK_DECORATOR,
        prelude="""
        from datetime import timedelta
        from latent.prefect import flow

        # the example is a signature overview: `**task_kwargs` needs a mapping to unpack
        task_kwargs = {}
        output_data = {"answer": 42}
        """,
        harness=harness("tasks", "my_task()"),
    )


def test_task_decorator_overview(project: SpecProject) -> None:
    _task_decorator_project(project)
    module = project.module("tasks")
    assert module.my_task.name == "task_name"
    assert module.my_task() == {"answer": 42}  # input_dataset loaded from the catalog
    assert json.loads((project.root / "data/output.json").read_text()) == {"answer": 42}


def test_task_decorator_overview_in_a_flow(project: SpecProject) -> None:
    _task_decorator_project(project)
    assert project.load("tasks")() == {"answer": 42}  # input_dataset loaded from the catalog
    assert json.loads((project.root / "data/output.json").read_text()) == {"answer": 42}


# ---------------------------------------------------------------------------------------------
# Basic Task

BASIC_TASK = '''
@task("process_data")
def process_data(data):
    """Simple task with no caching."""
    return data.dropna()
'''


def test_basic_task(project: SpecProject) -> None:
    project.flow_file("tasks", BASIC_TASK, prelude="from latent.prefect import task")
    process_data = project.module("tasks").process_data
    data = pd.DataFrame({"value": [1.0, None, 3.0]})
    assert process_data(data)["value"].tolist() == [1.0, 3.0]


# ---------------------------------------------------------------------------------------------
# Task with Catalog I/O

CATALOG_IO = '''
@task(
    "clean_data",
    input="raw_data",      # Loaded from catalog
    output="cleaned_data"  # Saved to catalog
)
def clean_data(raw_data: pd.DataFrame) -> pd.DataFrame:
    """Task with automatic data loading/saving."""
    cleaned = raw_data.dropna()
    cleaned = cleaned[cleaned['value'] > 0]
    return cleaned
'''


def _catalog_io_project(project: SpecProject) -> None:
    pd.DataFrame({"id": [1, 2, 3, 4], "value": [1.5, -2.0, None, 4.0]}).to_csv(
        project.root / "data/raw.csv", index=False
    )
    project.catalog(
        {
            "raw_data": {"type": "csv", "filepath": "data/raw.csv"},
            "cleaned_data": {"type": "parquet", "filepath": "data/cleaned.parquet"},
        }
    )
    project.flow_file(
        "tasks",
        CATALOG_IO,
        prelude="""
        import pandas as pd
        from latent.prefect import flow, task
        """,
        harness=harness("tasks", "clean_data()"),
    )


def _assert_cleaned(project: SpecProject, cleaned: pd.DataFrame) -> None:
    assert cleaned["id"].tolist() == [1, 4]
    saved = pd.read_parquet(project.root / "data/cleaned.parquet")
    assert saved["id"].tolist() == [1, 4]
    assert saved["value"].tolist() == [1.5, 4.0]


def test_task_with_catalog_io(project: SpecProject) -> None:
    _catalog_io_project(project)
    _assert_cleaned(project, project.module("tasks").clean_data())


def test_task_with_catalog_io_in_a_flow(project: SpecProject) -> None:
    _catalog_io_project(project)
    _assert_cleaned(project, project.load("tasks")())


# ---------------------------------------------------------------------------------------------
# Task with Custom Caching

CUSTOM_CACHING = '''
from datetime import timedelta

@task(
    "expensive_computation",
    input="data",
    output="results",
    cache_expiration=timedelta(days=30),  # Cache for 30 days
)
def expensive_computation(data):
    """Task with extended cache duration."""
    # Expensive processing...
    return results
'''


def _custom_caching_project(project: SpecProject) -> None:
    (project.root / "data/data.json").write_text("[1, 2, 3]")
    project.catalog(
        {
            "data": {"type": "json", "filepath": "data/data.json"},
            "results": {"type": "json", "filepath": "data/results.json"},
        }
    )
    project.flow_file(
        "tasks",
        CUSTOM_CACHING,
        prelude="""
        from latent.prefect import flow, task

        results = {"total": 6}
        """,
        harness=harness("tasks", "expensive_computation()"),
    )


def test_task_with_custom_caching(project: SpecProject) -> None:
    _custom_caching_project(project)
    module = project.module("tasks")
    assert module.expensive_computation() == {"total": 6}
    assert json.loads((project.root / "data/results.json").read_text()) == {"total": 6}
    assert module.expensive_computation() == {"total": 6}  # from the cache


def test_task_with_custom_caching_in_a_flow(project: SpecProject) -> None:
    _custom_caching_project(project)
    tasks = project.load("tasks")
    assert tasks() == {"total": 6}
    assert json.loads((project.root / "data/results.json").read_text()) == {"total": 6}
    assert tasks() == {"total": 6}  # from the cache


# ---------------------------------------------------------------------------------------------
# Task without Caching

WITHOUT_CACHING = '''
@task(
    "generate_timestamp",
    cache=False,  # Disable caching for non-deterministic tasks
    retry=False   # Disable retries
)
def generate_timestamp():
    """Task that always runs (no caching)."""
    return datetime.now().isoformat()
'''


def test_task_without_caching(project: SpecProject) -> None:
    project.flow_file(
        "tasks",
        WITHOUT_CACHING,
        prelude="""
        from datetime import datetime
        from latent.prefect import task
        """,
    )
    generate_timestamp = project.module("tasks").generate_timestamp
    first = generate_timestamp()
    second = generate_timestamp()
    assert datetime.fromisoformat(first) < datetime.fromisoformat(second)  # ran twice


# ---------------------------------------------------------------------------------------------
# Enhanced Error Context

ERROR_CONTEXT = """
@task("process", input="data")
def process_task(data):
    raise ValueError("Processing failed!")
"""

ERROR_OUTPUT = (
    "Task 'process' failed.\n"
    "Original error: ValueError: Processing failed!\n"
    "Context: {'input': 'data', 'row_index': None}"
)


def test_enhanced_error_context_in_a_flow(project: SpecProject, log_records: LogRecords) -> None:
    """In a flow the task retries 3 times (1 + 2 + 4 s), then fails with the spec's text."""
    (project.root / "data/data.json").write_text('{"rows": 3}')
    project.catalog({"data": {"type": "json", "filepath": "data/data.json"}})
    project.flow_file(
        "error_flow",
        ERROR_CONTEXT,
        prelude="from latent.prefect import flow, task",
        harness="""
        @flow("error_flow")
        def error_flow():
            return process_task()
        """,
    )
    with pytest.raises(TaskExecutionError) as info:
        project.load("error_flow")()
    assert str(info.value) == ERROR_OUTPUT
    assert f"TaskExecutionError: {info.value}" == "TaskExecutionError: " + ERROR_OUTPUT
    assert isinstance(info.value.__cause__, ValueError)
    retries = [m for m in log_records.messages(logging.WARNING) if "retrying" in m]
    assert len(retries) == 3  # attempts 1-3 warn, the 4th raises


def test_enhanced_error_context_outside_a_flow(project: SpecProject) -> None:
    (project.root / "data/data.json").write_text('{"rows": 3}')
    project.catalog({"data": {"type": "json", "filepath": "data/data.json"}})
    project.flow_file("tasks", ERROR_CONTEXT, prelude="from latent.prefect import task")
    with pytest.raises(TaskExecutionError) as info:
        project.module("tasks").process_task()
    assert str(info.value) == ERROR_OUTPUT


# ---------------------------------------------------------------------------------------------
# Hybrid Caching Strategy: 1. File-Based Caching (Batch)

FILE_BASED = """
@task("cached_task", input="raw_data", output="processed_data")
def cached_task(raw_data):
    # Cached based on:
    # 1. The hash of raw_data
    # 2. The task code signature
    # 3. Cross-flow references (if any)

    # If raw_data hasn't changed,
    # the cached result is returned immediately
    return expensive_processing(raw_data)
"""


def test_file_based_caching(project: SpecProject) -> None:
    raw = project.root / "data/raw.csv"
    processed = project.root / "data/processed.parquet"
    pd.DataFrame({"value": [1, 2, 3]}).to_csv(raw, index=False)
    project.catalog(
        {
            "raw_data": {"type": "csv", "filepath": "data/raw.csv"},
            "processed_data": {"type": "parquet", "filepath": "data/processed.parquet"},
        }
    )
    project.flow_file(
        "batch_flow",
        FILE_BASED,
        prelude="""
        from latent.prefect import flow, task

        def expensive_processing(raw_data):
            record("expensive_processing")
            return raw_data.assign(squared=raw_data["value"] ** 2)
        """,
        harness="""
        @flow("batch_flow")
        def batch_flow():
            return cached_task()
        """,
    )
    batch_flow = project.load("batch_flow")
    assert batch_flow()["squared"].tolist() == [1, 4, 9]
    assert batch_flow()["squared"].tolist() == [1, 4, 9]
    assert len(project.calls()) == 1  # the second run was a cache hit

    pd.DataFrame({"value": [1, 2, 3, 4]}).to_csv(raw, index=False)  # the data changed
    assert batch_flow()["squared"].tolist() == [1, 4, 9, 16]
    assert len(project.calls()) == 2

    processed.unlink()  # the output dataset is gone: the task runs again to recreate it
    assert batch_flow()["squared"].tolist() == [1, 4, 9, 16]
    assert len(project.calls()) == 3
    assert pd.read_parquet(processed)["squared"].tolist() == [1, 4, 9, 16]


# ---------------------------------------------------------------------------------------------
# Disabling Caching

DISABLING_CACHING = """
# For non-deterministic tasks
@task("random_task", cache=False)
def random_task():
    return random.random()

# For always-fresh data
@task("fetch_latest", cache=False)
def fetch_latest():
    return api.get_latest()
"""


def test_disabling_caching(project: SpecProject) -> None:
    project.flow_file(
        "tasks",
        DISABLING_CACHING,
        prelude="""
        import random
        from latent.prefect import task

        class _Api:
            def __init__(self):
                self.version = 0

            def get_latest(self):
                record("get_latest")
                self.version += 1
                return {"version": self.version}

        api = _Api()
        """,
    )
    module = project.module("tasks")
    draws = {module.random_task() for _ in range(3)}
    assert len(draws) == 3  # a fresh draw every call
    assert module.fetch_latest() == {"version": 1}
    assert module.fetch_latest() == {"version": 2}
    assert project.calls() == ["get_latest", "get_latest"]


# ---------------------------------------------------------------------------------------------
# Custom Cache Duration

CUSTOM_DURATION = """
from datetime import timedelta

# Cache for 30 days
@task("expensive_task", input="data", cache_expiration=timedelta(days=30))
def expensive_task(data):
    return very_expensive_computation(data)

# Cache for 1 hour
@task("api_task", cache_expiration=timedelta(hours=1))
def api_task():
    return fetch_from_api()
"""


def _custom_duration_project(project: SpecProject) -> None:
    (project.root / "data/data.json").write_text("[1, 2, 3]")
    project.catalog({"data": {"type": "json", "filepath": "data/data.json"}})
    project.flow_file(
        "tasks",
        CUSTOM_DURATION,
        prelude="""
        from latent.prefect import flow, task

        def very_expensive_computation(data):
            record("very_expensive_computation")
            return sum(data)

        def fetch_from_api():
            record("fetch_from_api")
            return {"status": "ok"}
        """,
        harness=harness("tasks", "[expensive_task(), expensive_task(), api_task(), api_task()]"),
    )


def test_custom_cache_duration(project: SpecProject) -> None:
    _custom_duration_project(project)
    module = project.module("tasks")
    assert [module.expensive_task(), module.expensive_task()] == [6, 6]
    assert [module.api_task(), module.api_task()] == [{"status": "ok"}] * 2
    assert project.calls() == ["very_expensive_computation", "fetch_from_api"]


def test_custom_cache_duration_in_a_flow(project: SpecProject) -> None:
    _custom_duration_project(project)
    assert project.load("tasks")() == [6, 6, {"status": "ok"}, {"status": "ok"}]
    assert project.calls() == ["very_expensive_computation", "fetch_from_api"]
