"""@flow: parameters, typed config, catalog inputs and outputs, subflows, concurrency."""

from __future__ import annotations

import threading
from datetime import date

import pandas as pd
import pytest
from project_dir import ProjectDir

from latent.config import ConfigValidationError


def test_params_typed_config_and_get_config(project: ProjectDir) -> None:
    project.write("config/global.yaml", "model_name: gpt-4\nshared: {a: 1, b: 2}\n")
    project.flow(
        "my_flow",
        """
        from pydantic import BaseModel, Field
        from latent.prefect import flow, params, get_config

        class MyFlowConfig(BaseModel):
            batch_size: int = Field(gt=0)
            model_name: str
            learning_rate: float = 0.001
            max_iterations: int = Field(default=1000, le=10000)

        @flow("my_flow", config_schema=MyFlowConfig)
        def my_flow():
            config = get_config()
            return {
                "batch_size": params.batch_size,
                "model": params.model_name,
                "max_iterations": params.max_iterations,
                "lr": params["learning_rate"],
                "timeout": params.get("timeout", 30),
                "from_config": config["parameters"]["batch_size"],
            }
        """,
        parameters={"batch_size": 32, "learning_rate": 0.001},
    )
    result = project.load("my_flow")()
    assert result == {
        "batch_size": 32,
        "model": "gpt-4",
        "max_iterations": 1000,
        "lr": 0.001,
        "timeout": 30,
        "from_config": 32,
    }


def test_validation_fails_before_any_task_runs(project: ProjectDir) -> None:
    project.flow(
        "my_flow",
        """
        from pydantic import BaseModel, Field
        from latent.prefect import flow, task

        class Config(BaseModel):
            batch_size: int = Field(gt=0)

        @task("work")
        def work():
            count("work")

        @flow("my_flow", config_schema=Config)
        def my_flow():
            count("flow")
            work()
        """,
        parameters={"batch_size": 0},
    )
    with pytest.raises(ValueError) as info:
        project.load("my_flow")()
    assert isinstance(info.value, ConfigValidationError)
    message = str(info.value)
    assert message.startswith("Configuration validation failed for flow 'my_flow':")
    assert "\n  batch_size: " in message
    assert "greater than 0" in message
    assert project.calls() == []


def test_catalog_inputs_outputs_and_cross_flow(project: ProjectDir) -> None:
    pd.DataFrame({"value": [1.0, -2.0, None, 4.0]}).to_csv(
        project.root / "data/raw.csv", index=False
    )
    project.write(
        "config/catalog.yaml",
        "raw_data:\n  type: pandas.CSVDataset\n  filepath: data/raw.csv\n",
    )
    project.flow(
        "upstream_flow",
        """
        import pandas as pd
        from latent.prefect import flow, task

        @task("clean_data", input="raw_data", output="cleaned_data")
        def clean_data(raw_data: pd.DataFrame) -> pd.DataFrame:
            cleaned = raw_data.dropna()
            return cleaned[cleaned["value"] > 0]

        @flow("upstream_flow", output=["output_dataset"])
        def upstream_flow():
            return clean_data().assign(doubled=lambda d: d["value"] * 2)
        """,
        catalog={"cleaned_data": {"type": "parquet", "filepath": "data/upstream/cleaned.parquet"}},
    )
    project.flow(
        "downstream_flow",
        """
        from latent.prefect import flow

        @flow("downstream_flow", input=["upstream_flow.output_dataset"], output=["stats", "rows"])
        def downstream_flow(upstream_data):
            total = float(upstream_data["doubled"].sum())
            return {"stats": {"n": len(upstream_data), "sum": total}, "rows": upstream_data}
        """,
    )
    out = project.load("upstream_flow")()
    assert list(out["value"]) == [1.0, 4.0]
    assert (project.root / "data/upstream/cleaned.parquet").exists()
    # an output no catalog declares gets a default home that another flow can read
    assert (project.root / "data/upstream_flow/output_dataset.parquet").exists()

    stats = project.load("downstream_flow")()["stats"]
    assert stats == {"n": 2, "sum": 10.0}
    saved = project.root / "data/downstream_flow"
    assert (saved / "stats.pkl").exists()  # a dict: pickle by default
    assert (saved / "rows.parquet").exists()


def test_explicit_arguments_win_over_catalog(project: ProjectDir) -> None:
    project.write("config/catalog.yaml", "numbers:\n  type: json\n  filepath: data/numbers.json\n")
    (project.root / "data/numbers.json").write_text("[1, 2, 3]")
    project.flow(
        "summer",
        """
        from latent.prefect import flow

        @flow("summer", input=["numbers"])
        def summer(numbers):
            return sum(numbers)
        """,
    )
    summer = project.load("summer")
    assert summer() == 6
    assert summer([10, 20]) == 30


def test_several_outputs_must_match(project: ProjectDir) -> None:
    project.flow(
        "two",
        """
        from latent.prefect import flow

        @flow("two", output=["a", "b"])
        def two():
            return 1
        """,
    )
    with pytest.raises(ValueError, match=r"declares outputs \['a', 'b'\] but returned int"):
        project.load("two")()


def test_subflows_get_their_own_params(project: ProjectDir) -> None:
    project.flow(
        "subflow",
        """
        from latent.prefect import flow, params, task

        @task("clean")
        def clean_task(data):
            return [x for x in data if x is not None]

        @task("process")
        def process_task(data):
            return [x * params.factor for x in data]

        @flow("subflow")
        def subflow(data):
            cleaned = clean_task(data)
            return process_task(cleaned)
        """,
        parameters={"factor": 10},
    )
    project.flow(
        "main_flow",
        """
        import importlib.util, sys
        from pathlib import Path
        from latent.prefect import flow, params

        spec = importlib.util.spec_from_file_location(
            "subflow_mod", Path(__file__).parents[1] / "subflow" / "flow.py")
        mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)
        subflow = mod.subflow

        @flow("main_flow")
        def main_flow():
            result1 = subflow([1, None, 2])
            result2 = subflow([3])
            return result1 + result2, params.factor
        """,
        parameters={"factor": 1},
    )
    combined, outer_factor = project.load("main_flow")()
    assert combined == [10, 20, 30]
    assert outer_factor == 1  # the outer flow's params are back after the subflow


def test_two_flows_in_threads_keep_their_own_params(project: ProjectDir) -> None:
    code = """
        import time
        from latent.prefect import flow, params, task

        @task("read", cache=False)
        def read():
            time.sleep(0.2)
            return params.who

        @flow("{name}")
        def f():
            first = params.who
            time.sleep(0.2)
            return first, read(), params.who
        """
    project.flow("flow_a", code.replace("{name}", "flow_a"), parameters={"who": "a"})
    project.flow("flow_b", code.replace("{name}", "flow_b"), parameters={"who": "b"})
    flows = {"a": project.load("flow_a"), "b": project.load("flow_b")}
    results: dict[str, object] = {}

    def run(key: str) -> None:
        results[key] = flows[key]()

    threads = [threading.Thread(target=run, args=(k,)) for k in flows]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {"a": ("a", "a", "a"), "b": ("b", "b", "b")}


def test_prefect_flow_options_pass_through(project: ProjectDir) -> None:
    project.flow(
        "flaky",
        """
        from latent.prefect import flow

        @flow("flaky", retries=1, log_prints=True)
        def flaky():
            count("attempt")
            if len(open(__file__.replace("flows/flaky/flow.py", "calls.log")).read().split()) < 2:
                raise RuntimeError("first attempt fails")
            print("done")
            return "ok"
        """,
    )
    assert project.load("flaky")() == "ok"
    assert project.calls() == ["attempt", "attempt"]


def test_unknown_flow_directory_lists_existing(project: ProjectDir) -> None:
    project.flow("real_flow", "from latent.prefect import flow\n")
    project.write(
        "elsewhere.py",
        """
        from latent.prefect import flow

        @flow("ghost_flow")
        def ghost():
            return 1
        """,
    )
    import importlib.util

    spec = importlib.util.spec_from_file_location("elsewhere", project.root / "elsewhere.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    with pytest.raises(Exception, match="real_flow"):
        mod.ghost()


def test_a_flow_runs_arguments_are_recorded_by_prefect_plain_or_encoded(
    project: ProjectDir,
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.context import FlowRunContext

    project.flow(
        "args",
        """
        from datetime import date
        from prefect.context import FlowRunContext
        from latent.prefect import flow

        @flow("args")
        def args(n: int, name: str, opts: dict, when: object = None):
            return str(FlowRunContext.get().flow_run.id)
        """,
    )
    flow_obj = project.load("args")
    plain = flow_obj(3, "x", {"k": [1, 2.5, None, True]})
    encoded = flow_obj(3, "x", {"k": 1}, when=date(2026, 1, 2))
    assert FlowRunContext.get() is None
    with get_client(sync_client=True) as client:
        recorded = [client.read_flow_run(run_id).parameters for run_id in (plain, encoded)]
    # plain JSON values as they were; anything else as Prefect's encoder makes it (an ISO date)
    assert recorded[0] == {"n": 3, "name": "x", "opts": {"k": [1, 2.5, None, True]}, "when": None}
    assert recorded[1]["when"] == "2026-01-02"
