"""The spec's @flow examples, verbatim, run in a tiny project.

Sections of the docs page covered here: "The @flow Decorator", "Basic Flow", "Flow with Inputs",
"Cross-Flow Data Loading", "Typed Configuration" (+ its parameters.yaml and error), "Using
get_config()", "Parallel Task Execution", "Conditional Task Execution", "Subflows",
"Row-Level Caching (Granular)".
"""

from __future__ import annotations

import json
import logging

import pandas as pd
import pytest
from spec_project import LogRecords, SpecProject

# ---------------------------------------------------------------------------------------------
# The @flow Decorator

FLOW_DECORATOR = """
from latent.prefect import flow
from pydantic import BaseModel

class FlowConfig(BaseModel):
    batch_size: int
    model_name: str

@flow(
    "flow_name",                    # Required: flow name (matches directory name)
    input=["dataset1", "dataset2"], # Optional: input datasets from catalog
    output=["result1", "result2"],  # Optional: output datasets to save
    config_schema=FlowConfig,       # Optional: Pydantic model for typed config
    **flow_kwargs                   # Optional: additional Prefect flow options
)
def my_flow():
    # Your flow logic
    pass
"""


def _flow_decorator_project(project: SpecProject) -> None:
    project.catalog(
        {
            "dataset1": {"type": "json", "filepath": "data/dataset1.json"},
            "dataset2": {"type": "json", "filepath": "data/dataset2.json"},
        }
    )
    (project.root / "data/dataset1.json").write_text("[1, 2]")
    (project.root / "data/dataset2.json").write_text("[3]")
    project.flow_file(
        "flow_name",
        FLOW_DECORATOR,
        # the example is a signature overview: `**flow_kwargs` needs a mapping to unpack
        prelude="flow_kwargs = {}  # fragment: the smallest value that makes **flow_kwargs valid",
        parameters={"batch_size": 8, "model_name": "gpt-4"},
    )


# The overview declares input=[...] on a function without parameters: Latent warns at
# decoration that the inputs will not be loaded, and a None return saves no outputs.
ignore_overview_warning = pytest.mark.filterwarnings("ignore::UserWarning")


@ignore_overview_warning
def test_flow_decorator_overview_defines_a_flow(project: SpecProject) -> None:
    _flow_decorator_project(project)
    my_flow = project.load("flow_name")
    assert my_flow.name == "flow_name"


@ignore_overview_warning
def test_flow_decorator_overview_runs(project: SpecProject) -> None:
    _flow_decorator_project(project)
    assert project.load("flow_name")() is None


# ---------------------------------------------------------------------------------------------
# Basic Flow

BASIC_FLOW = '''
@flow("simple_flow")
def simple_flow():
    """A simple flow with no explicit inputs/outputs."""
    logger.info("Flow started")
    # Your logic here
    return result
'''


def test_basic_flow(project: SpecProject, log_records: LogRecords) -> None:
    project.flow_file(
        "simple_flow",
        BASIC_FLOW,
        prelude="""
        from latent.prefect import flow, logger

        result = {"status": "done", "rows": 3}
        """,
    )
    assert project.load("simple_flow")() == {"status": "done", "rows": 3}
    assert "Flow started" in log_records.messages(logging.INFO)


# ---------------------------------------------------------------------------------------------
# Flow with Inputs

FLOW_WITH_INPUTS = '''
@flow(
    "processing_flow",
    input=["raw_data", "config_data"]
)
def processing_flow(raw_data, config_data):
    """Flow that loads datasets automatically."""
    # raw_data and config_data are loaded from catalog
    processed = process(raw_data, config_data)
    return processed
'''


def test_flow_with_inputs(project: SpecProject) -> None:
    pd.DataFrame({"value": [1, 2, 3]}).to_csv(project.root / "data/raw.csv", index=False)
    (project.root / "data/config.yaml").write_text("scale: 10\n")
    project.catalog(
        {
            "raw_data": {"type": "csv", "filepath": "data/raw.csv"},
            "config_data": {"type": "yaml", "filepath": "data/config.yaml"},
        }
    )
    project.flow_file(
        "processing_flow",
        FLOW_WITH_INPUTS,
        prelude="""
        from latent.prefect import flow

        def process(raw_data, config_data):
            return raw_data.assign(scaled=raw_data["value"] * config_data["scale"])
        """,
    )
    processed = project.load("processing_flow")()
    assert processed.to_dict("list") == {"value": [1, 2, 3], "scaled": [10, 20, 30]}


# ---------------------------------------------------------------------------------------------
# Cross-Flow Data Loading

CROSS_FLOW_DATA = '''
@flow(
    "downstream_flow",
    input=["upstream_flow.output_dataset"]
)
def downstream_flow(upstream_data):
    """Load outputs from another flow."""
    # Loads output_dataset from upstream_flow
    result = analyze(upstream_data)
    return result
'''

# Not a spec example: the upstream flow whose output the example reads.
UPSTREAM_FLOW = """\
import pandas as pd
from latent.prefect import flow


@flow("upstream_flow", output=["output_dataset"])
def upstream_flow():
    return pd.DataFrame({"answer": ["a", "b", "c"], "score": [1.0, 0.5, 0.0]})
"""


def test_cross_flow_data_loading(project: SpecProject) -> None:
    project.write("flows/upstream_flow/flow.py", UPSTREAM_FLOW)
    project.write("flows/upstream_flow/parameters.yaml", "{}\n")
    project.flow_file(
        "downstream_flow",
        CROSS_FLOW_DATA,
        prelude="""
        from latent.prefect import flow

        def analyze(data):
            return {"rows": len(data), "mean_score": float(data["score"].mean())}
        """,
    )
    project.load("upstream_flow")()
    assert project.load("downstream_flow")() == {"rows": 3, "mean_score": 0.5}


# ---------------------------------------------------------------------------------------------
# Typed Configuration

TYPED_CONFIG = """
from pydantic import BaseModel, Field
from latent.prefect import flow, params

class MyFlowConfig(BaseModel):
    batch_size: int = Field(gt=0, description="Batch size for processing")
    model_name: str
    learning_rate: float = 0.001
    max_iterations: int = Field(default=1000, le=10000)

@flow("my_flow", config_schema=MyFlowConfig)
def my_flow():
    # params is now a typed Pydantic model
    batch_size: int = params.batch_size  # IDE autocomplete works!
    model: str = params.model_name

    # Validation happens automatically on flow start
    logger.info(f"Running with batch_size={batch_size}")
"""

TYPED_CONFIG_PARAMETERS = """\
# parameters.yaml
batch_size: 32
model_name: "gpt-4"
learning_rate: 0.001
# max_iterations uses default (1000)
"""

TYPED_CONFIG_PRELUDE = "from latent.prefect import logger"


def test_typed_configuration(project: SpecProject, log_records: LogRecords) -> None:
    project.flow_file(
        "my_flow", TYPED_CONFIG, prelude=TYPED_CONFIG_PRELUDE, parameters=TYPED_CONFIG_PARAMETERS
    )
    assert project.load("my_flow")() is None
    assert "Running with batch_size=32" in log_records.messages(logging.INFO)


def test_typed_configuration_validation_error(project: SpecProject) -> None:
    project.flow_file(
        "my_flow",
        TYPED_CONFIG,
        prelude=TYPED_CONFIG_PRELUDE,
        parameters=TYPED_CONFIG_PARAMETERS.replace("batch_size: 32", "batch_size: 0"),
    )
    with pytest.raises(ValueError) as info:
        project.load("my_flow")()
    message = str(info.value)
    # The spec shows pydantic v1's wording; the structure is the contract.
    assert message.startswith("Configuration validation failed for flow 'my_flow':\n  batch_size: ")
    assert "greater than 0" in message.splitlines()[1]


# ---------------------------------------------------------------------------------------------
# Using get_config()

GET_CONFIG = """
from latent.prefect import get_config

@flow("my_flow")
def my_flow():
    config = get_config()

    # Access parameters
    batch_size = config["parameters"]["batch_size"]

    # Access catalog
    datasets = config["catalog"]
"""


def test_get_config(project: SpecProject) -> None:
    project.catalog({"raw_data": {"type": "csv", "filepath": "data/raw.csv"}})
    project.flow_file(
        "my_flow",
        GET_CONFIG,
        prelude="from latent.prefect import flow",
        parameters={"batch_size": 32},
    )
    # the example returns nothing; a missing "parameters"/"batch_size"/"catalog" key would raise
    assert project.load("my_flow")() is None


# ---------------------------------------------------------------------------------------------
# Parallel Task Execution

PARALLEL = """
@flow("parallel_flow")
def parallel_flow():
    items = load_items()

    # Execute task in parallel for each item
    futures = process_item_task.map(
        item=items,
        idx=range(len(items))
    )

    # Wait for all tasks to complete
    results = [f.result() for f in futures]

    return aggregate(results)


@task("process_item")
def process_item_task(item, idx):
    logger.info(f"Processing item {idx}")
    return process(item)
"""


def test_parallel_task_execution(project: SpecProject, log_records: LogRecords) -> None:
    project.flow_file(
        "parallel_flow",
        PARALLEL,
        prelude="""
        from latent.prefect import flow, logger, task

        def load_items():
            return [{"text": word} for word in ["alpha", "beta", "gamma", "delta", "epsilon"]]

        def process(item):
            record(item["text"])
            return len(item["text"])

        def aggregate(results):
            return {"n": len(results), "total": sum(results), "lengths": results}
        """,
    )
    expected = {"n": 5, "total": 26, "lengths": [5, 4, 5, 5, 7]}
    assert project.load("parallel_flow")() == expected
    assert sorted(project.calls()) == ["alpha", "beta", "delta", "epsilon", "gamma"]
    infos = log_records.messages(logging.INFO)
    assert {f"Processing item {i}" for i in range(5)} <= set(infos)

    # run again: every mapped call is a cache hit, no body runs
    assert project.load("parallel_flow")() == expected
    assert len(project.calls()) == 5


# ---------------------------------------------------------------------------------------------
# Conditional Task Execution

CONDITIONAL = """
@flow("conditional_flow")
def conditional_flow():
    data = load_data()

    if params.enable_preprocessing:
        data = preprocess_task(data)

    results = analyze_task(data)

    if params.save_intermediate:
        save_intermediate_task(data)

    return results
"""

CONDITIONAL_PRELUDE = """
from latent.prefect import flow, params, task

def load_data():
    return [3, None, 1, 2]

@task("preprocess", cache=False)
def preprocess_task(data):
    record("preprocess")
    return sorted(x for x in data if x is not None)

@task("analyze", cache=False)
def analyze_task(data):
    record("analyze")
    return {"n": len(data), "first": data[0]}

@task("save_intermediate", cache=False)
def save_intermediate_task(data):
    record("save_intermediate")
"""


def test_conditional_task_execution(project: SpecProject) -> None:
    parameters = {"enable_preprocessing": True, "save_intermediate": False}
    project.flow_file(
        "conditional_flow", CONDITIONAL, prelude=CONDITIONAL_PRELUDE, parameters=parameters
    )
    assert project.load("conditional_flow")() == {"n": 3, "first": 1}
    assert project.calls() == ["preprocess", "analyze"]

    parameters = {"enable_preprocessing": False, "save_intermediate": True}
    project.flow_file(
        "conditional_flow", CONDITIONAL, prelude=CONDITIONAL_PRELUDE, parameters=parameters
    )
    assert project.load("conditional_flow")() == {"n": 4, "first": 3}
    assert project.calls()[2:] == ["analyze", "save_intermediate"]


# ---------------------------------------------------------------------------------------------
# Subflows

SUBFLOWS = '''
@flow("subflow")
def subflow(data):
    """A reusable subflow."""
    cleaned = clean_task(data)
    processed = process_task(cleaned)
    return processed


@flow("main_flow")
def main_flow():
    """Main flow that calls subflows."""
    data1 = load_data_1()
    data2 = load_data_2()

    # Call subflow for each dataset
    result1 = subflow(data1)
    result2 = subflow(data2)

    return combine(result1, result2)
'''


SUBFLOWS_PRELUDE = """
from latent.prefect import flow, task

def load_data_1():
    return [1, None, 2]

def load_data_2():
    return [None, 3]

@task("clean")
def clean_task(data):
    record("clean")
    return [x for x in data if x is not None]

@task("process")
def process_task(data):
    record("process")
    return [x * 10 for x in data]

def combine(a, b):
    return a + b
"""


def test_subflows(project: SpecProject) -> None:
    project.flow_file("main_flow", SUBFLOWS, prelude=SUBFLOWS_PRELUDE)
    assert project.load("main_flow")() == [10, 20, 30]
    assert project.calls() == ["clean", "process", "clean", "process"]


def test_subflows_with_their_own_directory(project: SpecProject) -> None:
    # the same file, plus flows/subflow/parameters.yaml (a flow's name matches its directory)
    project.write("flows/subflow/parameters.yaml", "{}\n")
    project.flow_file("main_flow", SUBFLOWS, prelude=SUBFLOWS_PRELUDE)
    assert project.load("main_flow")() == [10, 20, 30]
    assert project.calls() == ["clean", "process", "clean", "process"]


# ---------------------------------------------------------------------------------------------
# Hybrid Caching Strategy: 2. Row-Level Caching (Granular)

ROW_LEVEL = """
@task("process_row")
def process_row(row_data: dict) -> dict:
    # Cached based on stable hash of row_data
    # Each unique row_data gets its own cache entry
    return expensive_computation(row_data)

@flow("my_flow")
def my_flow():
    rows = load_data()

    # Each row is cached independently
    results = process_row.map(row_data=rows)

    return results
"""


def test_row_level_caching(project: SpecProject) -> None:
    rows_file = project.root / "data/rows.json"
    rows = [{"id": i, "x": i * 1.5} for i in range(20)]
    rows_file.write_text(json.dumps(rows))
    project.flow_file(
        "my_flow",
        ROW_LEVEL,
        prelude="""
        import json
        from latent.prefect import flow, task

        def load_data():
            return json.loads((_Path(__file__).resolve().parents[2] / "data/rows.json").read_text())

        def expensive_computation(row_data):
            record(str(row_data["id"]))
            return {"id": row_data["id"], "y": row_data["x"] * 2}
        """,
    )

    def values(results: object) -> list[object]:
        # the flow returns what .map returned: futures (PrefectFutureList) of the rows
        return [f.result() if hasattr(f, "result") else f for f in results]  # type: ignore[attr-defined]

    expected = [{"id": i, "y": i * 3.0} for i in range(20)]
    assert values(project.load("my_flow")()) == expected
    assert sorted(map(int, project.calls())) == list(range(20))

    assert values(project.load("my_flow")()) == expected
    assert len(project.calls()) == 20  # every row cached

    rows[7]["x"] = 100.0
    rows_file.write_text(json.dumps(rows))
    expected[7] = {"id": 7, "y": 200.0}
    assert values(project.load("my_flow")()) == expected
    assert project.calls()[20:] == ["7"]  # exactly the changed row ran
