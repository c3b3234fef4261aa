"""The spec's observability examples, verbatim: "Task Registry & Visualization" (the exact
ASCII tree), "Automatic MLflow Spans" and "Automatic Metrics" (with MLflow enabled).
"""

from __future__ import annotations

import runpy

import pytest
from spec_project import SpecProject

from latent.registry import TaskRegistry

# ---------------------------------------------------------------------------------------------
# Task Registry & Visualization

REGISTRY_EXAMPLE = """
from latent.registry import TaskRegistry

# After running flows, visualize the pipeline
TaskRegistry.print_ascii()
"""

REGISTRY_OUTPUT = """\
=== 🌳 Canopy Pipeline Topology ===

📦 Flow: data_pipeline
  ├── ⚙️  load
  │    ⬆️  out: raw_data
  ├── ⚙️  clean
  │    ⬇️  in: raw_data
  │    ⬆️  out: cleaned_data
  ├── ⚙️  process
  │    ⬇️  in: cleaned_data
  │    ⬆️  out: processed_data
"""

# Not a spec example: the pipeline whose topology the spec prints.
DATA_PIPELINE = """
import pandas as pd
from latent.prefect import flow, task


@task("load", output="raw_data")
def load():
    return pd.DataFrame({"value": [1.0, None, -2.0, 3.0]})


@task("clean", input="raw_data", output="cleaned_data")
def clean(raw_data):
    cleaned = raw_data.dropna()
    return cleaned[cleaned["value"] > 0]


@task("process", input="cleaned_data", output="processed_data")
def process(cleaned_data):
    return cleaned_data.assign(doubled=cleaned_data["value"] * 2)


@flow("data_pipeline")
def data_pipeline():
    return process(clean(load()))
"""


def test_task_registry_ascii(project: SpecProject, capsys: pytest.CaptureFixture[str]) -> None:
    project.flow_file("data_pipeline", prelude="", harness=DATA_PIPELINE)
    assert project.load("data_pipeline")()["doubled"].tolist() == [2.0, 6.0]
    assert TaskRegistry.render_ascii() == REGISTRY_OUTPUT

    capsys.readouterr()
    runpy.run_path(str(project.write("show_registry.py", REGISTRY_EXAMPLE)))
    assert capsys.readouterr().out == REGISTRY_OUTPUT


# ---------------------------------------------------------------------------------------------
# Automatic MLflow Spans / Automatic Metrics

SPANS = """
@task("process_data", span_type="CHAIN")
def process_data(data):
    # Automatically creates an MLflow span with:
    # - span.type = "CHAIN"
    # - Automatic duration logging
    # - Input/output attributes
    return processed_data
"""

METRICS = """
@task("process")
def process_task(data):
    # Automatically logged:
    # - task.process.duration (in seconds)
    # - task.process.status (success/failure)
    # - Error details (if failed)
    return result
"""


@pytest.mark.slow
def test_spans_and_metrics_in_mlflow(project: SpecProject) -> None:
    project.settings('environment = "dev"\n\n[mlflow]\nenabled = true\n')
    project.flow_file(
        "observed",
        SPANS,
        METRICS,
        prelude="""
        from latent.prefect import flow, task

        processed_data = {"rows": 2}
        result = {"status": "ok"}
        """,
        harness="""
        @flow("observed")
        def observed():
            return process_data([1, 2]), process_task([3, 4])
        """,
    )
    assert project.load("observed")() == ({"rows": 2}, {"status": "ok"})

    from mlflow import MlflowClient

    from latent.config import Project

    client = MlflowClient(tracking_uri=Project.discover().tracking_uri)
    runs = [
        run
        for experiment in client.search_experiments()
        for run in client.search_runs([experiment.experiment_id])
    ]
    [run] = [r for r in runs if r.info.status == "FINISHED"]
    metrics = run.data.metrics
    assert metrics["task.process.status"] == 1.0
    assert metrics["task.process.duration"] >= 0.0
    assert metrics["task.process_data.status"] == 1.0

    traces = client.search_traces(locations=[run.info.experiment_id])
    spans = {span.name: span for trace in traces for span in trace.data.spans}
    assert spans["process_data"].span_type == "CHAIN"
    assert spans["process_data"].outputs == {"rows": 2}
