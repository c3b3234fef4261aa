"""The spec's configuration, logging, advanced-pattern and best-practice examples, verbatim.

Sections: "Using the params Object", "Cross-Flow Parameter Access" (both examples), "Using the
logger Object", "Using get_flow_logger()", "Dynamic Task Configuration", "Error Handling",
"Best Practices" 1-4. Tasks that read `params` need a flow: a harness flow calls them.
"""

from __future__ import annotations

import logging

import pandas as pd
import pytest
from spec_project import LogRecords, SpecProject

from latent.prefect import TaskExecutionError


def harness(flow_name: str, call: str) -> str:
    """A test-only flow that runs one task call and returns its value."""
    return f'@flow("{flow_name}")\ndef {flow_name}():\n    return {call}\n'


# ---------------------------------------------------------------------------------------------
# Using the params Object

PARAMS_OBJECT = """
from latent.prefect import params

@task("process")
def process_task(data):
    # Access parameters from parameters.yaml
    batch_size = params.batch_size
    model = params.model_name

    # Dict-style access
    lr = params["learning_rate"]

    # With default value
    timeout = params.get("timeout", 30)

    return process(data, batch_size, model, lr)
"""


def test_params_object(project: SpecProject) -> None:
    project.flow_file(
        "my_flow",
        PARAMS_OBJECT,
        prelude="""
        from latent.prefect import flow, task

        def process(data, batch_size, model, lr):
            return {"rows": len(data), "batch_size": batch_size, "model": model, "lr": lr}
        """,
        harness=harness("my_flow", "process_task([1, 2, 3])"),
        parameters={"batch_size": 16, "model_name": "gpt-4", "learning_rate": 0.01},
    )
    assert project.load("my_flow")() == {"rows": 3, "batch_size": 16, "model": "gpt-4", "lr": 0.01}


# ---------------------------------------------------------------------------------------------
# Cross-Flow Parameter Access

CROSS_FLOW_PARAMS = """
from latent.prefect import params

@task("analyze")
def analyze_task(data):
    # Access parameters from another flow
    upstream_model = params.get("upstream_flow.model_name")
    upstream_temp = params.get("upstream_flow.temperature", default=0.7)

    # Current flow parameters still work
    batch_size = params.batch_size

    return analyze(data, model=upstream_model, temp=upstream_temp)
"""

DOWNSTREAM_PARAMS = """
# Example: Downstream flow accessing upstream configuration
@flow("downstream_flow")
def downstream_flow():
    # Get the model that was used in upstream processing
    upstream_model = params.get("upstream_flow.model_name")

    # Use the same model for consistency
    if upstream_model:
        logger.info(f"Using upstream model: {upstream_model}")

    result = process_task()
    return result
"""

CROSS_FLOW_PRELUDE = """
from latent.prefect import flow, logger, task

def analyze(data, model, temp):
    return {"n": len(data), "model": model, "temp": temp}

# stand-in: the downstream flow's task runs the spec's analyze_task on a small batch
@task("process", cache=False)
def process_task():
    return analyze_task([0.1, 0.2])
"""


def _cross_flow_project(project: SpecProject, global_yaml: str) -> None:
    project.write("config/global.yaml", global_yaml)
    project.write("flows/upstream_flow/parameters.yaml", "model_name: gpt-4o\n")
    project.flow_file(
        "downstream_flow",
        CROSS_FLOW_PARAMS,
        DOWNSTREAM_PARAMS,
        prelude=CROSS_FLOW_PRELUDE,
        parameters={"batch_size": 8},
    )


def test_cross_flow_parameter_access(project: SpecProject, log_records: LogRecords) -> None:
    # global.yaml is merged into upstream_flow's parameters; flow-specific values win
    _cross_flow_project(project, "model_name: base-model\ntemperature: 0.2\n")
    result = project.load("downstream_flow")()
    assert result == {"n": 2, "model": "gpt-4o", "temp": 0.2}
    assert "Using upstream model: gpt-4o" in log_records.messages(logging.INFO)


def test_cross_flow_parameter_access_defaults(project: SpecProject) -> None:
    # no temperature anywhere: params.get(..., default=0.7) returns the default
    _cross_flow_project(project, "")
    assert project.load("downstream_flow")() == {"n": 2, "model": "gpt-4o", "temp": 0.7}


def test_cross_flow_parameter_access_only_through_get(project: SpecProject) -> None:
    """The spec's Note: attribute and item access do not reach into another flow."""
    project.write("flows/upstream_flow/parameters.yaml", "model_name: gpt-4o\n")
    project.flow_file(
        "downstream_flow",
        prelude="""
        from latent.prefect import flow, params
        """,
        harness="""
        @flow("downstream_flow")
        def downstream_flow():
            seen = {"get": params.get("upstream_flow.model_name")}
            try:
                params["upstream_flow.model_name"]
            except KeyError:
                seen["item"] = "KeyError"
            try:
                params.upstream_flow
            except AttributeError:
                seen["attribute"] = "AttributeError"
            return seen
        """,
    )
    assert project.load("downstream_flow")() == {
        "get": "gpt-4o",
        "item": "KeyError",
        "attribute": "AttributeError",
    }


# ---------------------------------------------------------------------------------------------
# Using the logger Object

LOGGER_OBJECT = """
from latent.prefect import logger

@task("process")
def process_task(data):
    logger.debug("Detailed debug information")
    logger.info(f"Processing {len(data)} rows")
    logger.warning("This might take a while")
    logger.error("Something went wrong")

    try:
        result = risky_operation()
    except Exception as e:
        logger.exception("Operation failed")
        raise

    return result
"""

LOGGER_PRELUDE = """
from latent.prefect import flow, task

def risky_operation():
    if (_Path(__file__).resolve().parents[2] / "data/fail.flag").exists():
        raise ConnectionError("service unavailable")
    return "ok"
"""


def test_logger_object(project: SpecProject, log_records: LogRecords) -> None:
    project.flow_file(
        "my_flow",
        LOGGER_OBJECT,
        prelude=LOGGER_PRELUDE,
        harness=harness("my_flow", "process_task([1, 2, 3])"),
    )
    assert project.load("my_flow")() == "ok"
    assert "Detailed debug information" in log_records.messages(logging.DEBUG)
    assert "Processing 3 rows" in log_records.messages(logging.INFO)
    assert "This might take a while" in log_records.messages(logging.WARNING)
    assert "Something went wrong" in log_records.messages(logging.ERROR)


def test_logger_object_exception_path(project: SpecProject, log_records: LogRecords) -> None:
    """Outside a flow (no retries): logger.exception logs the traceback, then the error rises."""
    (project.root / "data/fail.flag").write_text("")
    project.flow_file("my_flow", LOGGER_OBJECT, prelude=LOGGER_PRELUDE)
    with pytest.raises(TaskExecutionError) as info:
        project.module("my_flow").process_task([1, 2])
    assert isinstance(info.value.original, ConnectionError)
    [failed] = [r for r in log_records.records if r.getMessage() == "Operation failed"]
    assert failed.levelno == logging.ERROR
    assert failed.exc_info is not None and failed.exc_info[0] is ConnectionError


# ---------------------------------------------------------------------------------------------
# Using get_flow_logger()

GET_FLOW_LOGGER = """
from latent.prefect import get_flow_logger

@task("process")
def process_task(data):
    logger = get_flow_logger()
    logger.info("Task started")
    return data
"""


def test_get_flow_logger(project: SpecProject, log_records: LogRecords) -> None:
    project.flow_file(
        "my_flow",
        GET_FLOW_LOGGER,
        prelude="from latent.prefect import flow, task",
        harness=harness("my_flow", "process_task({'id': 1})"),
    )
    assert project.load("my_flow")() == {"id": 1}
    assert "Task started" in log_records.messages(logging.INFO)


# ---------------------------------------------------------------------------------------------
# Dynamic Task Configuration

DYNAMIC_CONFIG = """
@task("configurable_task")
def configurable_task(data):
    # Get task-specific config
    task_config = params.get("task_config", {})

    threshold = task_config.get("threshold", 0.5)
    method = task_config.get("method", "default")

    return process(data, threshold=threshold, method=method)
"""


def test_dynamic_task_configuration(project: SpecProject) -> None:
    def write(parameters: dict[str, object]) -> None:
        project.flow_file(
            "my_flow",
            DYNAMIC_CONFIG,
            prelude="""
            from latent.prefect import flow, params, task

            def process(data, threshold, method):
                return {"kept": [x for x in data if x > threshold], "method": method}
            """,
            harness=harness("my_flow", "configurable_task([0.2, 0.6, 0.9])"),
            parameters=parameters,
        )

    write({"task_config": {"threshold": 0.8, "method": "strict"}})
    assert project.load("my_flow")() == {"kept": [0.9], "method": "strict"}
    # the task read task_config: changing it must not return the cached result
    write({})
    assert project.load("my_flow")() == {"kept": [0.6, 0.9], "method": "default"}


# ---------------------------------------------------------------------------------------------
# Error Handling

ERROR_HANDLING = """
@task("robust_task", retry=True)
def robust_task(data):
    try:
        result = process(data)
    except ValueError as e:
        logger.warning(f"Validation error: {e}, using defaults")
        result = default_result()
    except Exception as e:
        logger.error(f"Unexpected error: {e}")
        raise

    return result
"""


def test_error_handling(project: SpecProject, log_records: LogRecords) -> None:
    project.flow_file(
        "tasks",
        ERROR_HANDLING,
        prelude="""
        from latent.prefect import logger, task

        def process(data):
            if any(x < 0 for x in data):
                raise ValueError("negative values")
            return sum(data)

        def default_result():
            return 0
        """,
    )
    robust_task = project.module("tasks").robust_task
    assert robust_task([1, 2]) == 3
    assert robust_task([1, -2]) == 0
    assert "Validation error: negative values, using defaults" in log_records.messages(
        logging.WARNING
    )
    with pytest.raises(TaskExecutionError) as info:
        robust_task(None)  # TypeError: not a validation problem, so it is raised
    assert isinstance(info.value.original, TypeError)
    assert any(m.startswith("Unexpected error: ") for m in log_records.messages(logging.ERROR))


# ---------------------------------------------------------------------------------------------
# Best Practices 1. Small, Focused Tasks

SMALL_TASKS = """
# ✅ Good: Single responsibility
@task("clean_data")
def clean_data(data):
    return data.dropna()

@task("transform_data")
def transform_data(data):
    return data.apply(transform_fn)

# ❌ Bad: Too much in one task
@task("process_everything")
def process_everything(data):
    data = data.dropna()
    data = data.apply(transform_fn)
    data = data.merge(other_data)
    # ... many more operations
"""


def test_small_focused_tasks(project: SpecProject) -> None:
    project.flow_file(
        "tasks",
        SMALL_TASKS,
        prelude="""
        import pandas as pd
        from latent.prefect import task

        def transform_fn(column):
            return column * 10

        other_data = pd.DataFrame({"id": [10, 30], "label": ["a", "c"]})
        """,
    )
    module = project.module("tasks")
    data = pd.DataFrame({"id": [1.0, 2.0, 3.0], "value": [1.0, None, 3.0]})
    cleaned = module.clean_data(data)
    assert cleaned["id"].tolist() == [1.0, 3.0]
    assert module.transform_data(cleaned)["value"].tolist() == [10.0, 30.0]
    # the "bad" example has no return statement: it runs, and returns None
    assert module.process_everything(data) is None


# ---------------------------------------------------------------------------------------------
# Best Practices 2. Use Type Hints (the ✅ and ❌ halves define the same name: one file each)

TYPE_HINTS_GOOD = """
# ✅ Good: Clear types
@task("process")
def process_task(data: pd.DataFrame) -> pd.DataFrame:
    return data.dropna()
"""

TYPE_HINTS_BAD = """
# ❌ Bad: No type hints
@task("process")
def process_task(data):
    return data.dropna()
"""


@pytest.mark.parametrize("example", [TYPE_HINTS_GOOD, TYPE_HINTS_BAD], ids=["good", "bad"])
def test_type_hints(project: SpecProject, example: str) -> None:
    project.flow_file(
        "tasks",
        example,
        prelude="""
        import pandas as pd
        from latent.prefect import task
        """,
    )
    result = project.module("tasks").process_task(pd.DataFrame({"v": [1.0, None]}))
    assert result["v"].tolist() == [1.0]


# ---------------------------------------------------------------------------------------------
# Best Practices 3. Descriptive Logging

LOGGING_GOOD = """
# ✅ Good: Informative logs
@task("process")
def process_task(data):
    logger.info(f"Processing {len(data)} rows with batch_size={params.batch_size}")
    result = process(data)
    logger.info(f"Processed {len(result)} rows, dropped {len(data) - len(result)}")
    return result
"""

LOGGING_BAD = """
# ❌ Bad: No context
@task("process")
def process_task(data):
    logger.info("Processing")
    return process(data)
"""


@pytest.mark.parametrize(
    ("example", "expected_logs"),
    [
        (LOGGING_GOOD, ["Processing 4 rows with batch_size=2", "Processed 3 rows, dropped 1"]),
        (LOGGING_BAD, ["Processing"]),
    ],
    ids=["good", "bad"],
)
def test_descriptive_logging(
    project: SpecProject, log_records: LogRecords, example: str, expected_logs: list[str]
) -> None:
    project.flow_file(
        "my_flow",
        example,
        prelude="""
        from latent.prefect import flow, logger, params, task

        def process(data):
            return [x for x in data if x is not None]
        """,
        harness=harness("my_flow", "process_task([1, None, 2, 3])"),
        parameters={"batch_size": 2},
    )
    assert project.load("my_flow")() == [1, 2, 3]
    infos = log_records.messages(logging.INFO)
    assert all(message in infos for message in expected_logs)


# ---------------------------------------------------------------------------------------------
# Best Practices 4. Handle Errors Gracefully

HANDLE_ERRORS = """
# ✅ Good: Explicit error handling
@task("api_call")
def api_call_task():
    try:
        result = api.fetch()
    except TimeoutError:
        logger.warning("API timeout, using cached data")
        result = load_cached()
    except Exception as e:
        logger.error(f"API call failed: {e}")
        raise
    return result
"""


def test_handle_errors_gracefully(project: SpecProject, log_records: LogRecords) -> None:
    project.flow_file(
        "tasks",
        HANDLE_ERRORS,
        prelude="""
        from latent.prefect import logger, task

        class _Api:
            def fetch(self):
                record("fetch")
                raise TimeoutError("read timed out")

        api = _Api()

        def load_cached():
            return {"source": "cache"}
        """,
    )
    assert project.module("tasks").api_call_task() == {"source": "cache"}
    assert "API timeout, using cached data" in log_records.messages(logging.WARNING)
    assert project.calls() == ["fetch"]
