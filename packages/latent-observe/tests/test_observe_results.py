"""The results API and MLflow's own fluent API land in the flow's run, read back with MlflowClient.

Threads, coroutines, tables, artifacts, datasets, what a flow returns, and what a task span says
(attributes, cached spans, token usage).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from contextvars import copy_context
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from latent.observe import (
    cached_rows,
    cached_span,
    configure_tracking,
    flow_run,
    log_artifact,
    log_dataset,
    log_metric,
    log_metrics,
    log_outputs,
    log_table,
    row_span_name,
    span,
    task_attributes,
)


def _spans(client: Any, run: Any) -> dict[str, Any]:
    (trace,) = client.search_traces(locations=[run.experiment_id], run_id=run.run_id)
    return {s.name: s for s in trace.data.spans}


def test_metrics_from_threads_and_coroutines_land_in_the_flow_run(client: Any) -> None:
    import mlflow

    def in_thread(index: int) -> None:
        log_metric("latent_thread", float(index))
        mlflow.log_metric("mlflow_thread", float(index))

    async def in_coroutine() -> None:
        await asyncio.sleep(0)
        log_metrics({"latent_async": 1.5})
        mlflow.log_metric("mlflow_async", 2.5)
        mlflow.log_param("async_param", "yes")

    with flow_run("results_flow") as run:
        # A plain pool (no context copied) falls back to the single active flow run.
        with ThreadPoolExecutor(2) as pool:
            list(pool.map(in_thread, range(3)))
        # Prefect's pools copy the context.
        with ThreadPoolExecutor(1) as pool:
            pool.submit(copy_context().run, in_thread, 7).result()
        asyncio.run(in_coroutine())
        assert mlflow.active_run() is not None
        assert mlflow.active_run().info.run_id == run.run_id

    recorded = client.get_run(run.run_id)
    metrics = recorded.data.metrics
    assert metrics["latent_async"] == 1.5 and metrics["mlflow_async"] == 2.5
    assert recorded.data.params["async_param"] == "yes"
    history = client.get_metric_history(run.run_id, "mlflow_thread")
    assert sorted(m.value for m in history) == [0.0, 1.0, 2.0, 7.0]
    assert len(client.get_metric_history(run.run_id, "latent_thread")) == 4
    # Nothing went to a stray run in experiment "Default".
    default = client.get_experiment_by_name("Default")
    assert client.search_runs([default.experiment_id]) == []
    assert mlflow.active_run() is None


def test_user_runs_nest_on_the_flow_run_and_end_run_cannot_end_it(client: Any) -> None:
    import mlflow

    with flow_run("nesting") as run:
        with mlflow.start_run(nested=True) as own:
            mlflow.log_metric("own_metric", 1.0)
        mlflow.log_metric("flow_metric", 2.0)
        with pytest.raises(RuntimeError, match="is the flow's run"):
            mlflow.end_run()

    assert client.get_run(own.info.run_id).data.metrics == {"own_metric": 1.0}
    assert client.get_run(own.info.run_id).data.tags["mlflow.parentRunId"] == run.run_id
    recorded = client.get_run(run.run_id)
    assert recorded.data.metrics["flow_metric"] == 2.0
    assert recorded.info.status == "FINISHED"


def test_table_artifact_and_dataset(client: Any, tmp_path: Path, tracking_uri: str) -> None:
    configure_tracking(tracking_uri=tracking_uri, experiment_prefix="test-", max_table_rows=3)
    frame = pd.DataFrame({"id": range(5), "score": [0.5, 0.25, 0.75, 1.0, 0.0]})
    notes = tmp_path / "notes.txt"
    notes.write_text("judge prompt v2")

    with flow_run("tables") as run:
        log_table(frame, "per_row")
        frame.loc[0, "score"] = 99.0  # changed after logging: the logged copy is unaffected
        log_table([{"a": 1}, {"a": 2}], "records")
        log_artifact(notes, "prompts")
        log_dataset("questions", "/data/questions.csv", "ab" * 16, rows=5, schema={"id": "int"})
        log_dataset("scored", "s3://bucket/scored.parquet", "cd" * 16, context="output")

    experiment = client.get_experiment(run.experiment_id)
    assert experiment.artifact_location.startswith(str(tmp_path / ".latent" / "artifacts"))
    table = client.load_table(run.experiment_id, "per_row.json", run_ids=[run.run_id])
    assert table["score"].tolist() == [0.5, 0.25, 0.75]
    recorded = client.get_run(run.run_id)
    assert recorded.data.tags["latent.table.per_row"] == "first 3 of 5 rows"
    assert recorded.data.tags["latent.table.records"] == "2 rows"
    paths = {a.path for a in client.list_artifacts(run.run_id)}
    assert {"per_row.json", "records.json", "prompts"} <= paths
    assert [a.path for a in client.list_artifacts(run.run_id, "prompts")] == ["prompts/notes.txt"]
    datasets = {d.dataset.name: d for d in recorded.inputs.dataset_inputs}
    questions, scored = datasets["questions"], datasets["scored"]
    assert questions.dataset.digest == "ab" * 16
    assert json.loads(questions.dataset.source) == {"uri": "/data/questions.csv"}
    assert json.loads(questions.dataset.profile) == {"num_rows": 5}
    assert [(t.key, t.value) for t in questions.tags] == [("mlflow.data.context", "input")]
    assert (scored.dataset.source_type, scored.tags[0].value) == ("s3", "output")


def test_flow_outputs_become_metrics_tables_and_root_outputs(client: Any) -> None:
    by_group = pd.DataFrame({"group": ["a", "b"], "pass_rate": [0.5, 1.0]})
    overall = pd.DataFrame({"pass_rate": [0.75], "mean_score": [0.6]})

    with flow_run("outputs") as run:
        log_outputs(
            {"summary": {"pass_rate": 0.75, "n": 4, "ok": True, "model": "m"}, "by_group": by_group}
        )
    with flow_run("one_row") as single:
        log_outputs(overall)

    metrics = client.get_run(run.run_id).data.metrics
    assert metrics["summary.pass_rate"] == 0.75 and metrics["summary.n"] == 4.0
    assert "summary.ok" not in metrics and "summary.model" not in metrics
    table = client.load_table(run.experiment_id, "by_group.json", run_ids=[run.run_id])
    assert table["group"].tolist() == ["a", "b"]
    root = _spans(client, run)["outputs"]
    assert root.outputs["summary"]["model"] == "m"
    assert root.outputs["by_group"]["shape"] == [2, 2]
    one = client.get_run(single.run_id).data.metrics
    assert (one["pass_rate"], one["mean_score"]) == (0.75, 0.6)


def test_task_spans_say_cache_row_and_attempt_and_cached_rows_show(client: Any) -> None:
    with flow_run("traced") as run:
        attrs = task_attributes(
            cache="miss", cache_key="k1", row_index=3, row_id="q-4", task_run_id="tr", attempt=2
        )
        with span(row_span_name("answer", 3, "q-4"), "LLM", attributes=attrs) as handle:
            handle.set_outputs(
                {"text": "hi", "usage": {"prompt_tokens": 7, "completion_tokens": 5}}
            )
        cached_span("answer", "LLM", cache_key="k0", row_index=0, row_id="q-1")
        cached_rows("answer", [(1, None), (2, None)])
        cached_rows("score", [(i, None) for i in range(120)], total=200, limit=50)

    spans = _spans(client, run)
    row = spans["answer[3] q-4"]
    assert row.attributes["latent.cache"] == "miss"
    assert row.attributes["latent.cache.id"] == "k1"
    assert row.attributes["latent.row.index"] == 3
    assert row.attributes["latent.row.id"] == "q-4"
    assert row.attributes["prefect.task_run.id"] == "tr"
    assert row.attributes["latent.attempt"] == 2
    assert row.attributes["mlflow.chat.tokenUsage"] == {
        "input_tokens": 7,
        "output_tokens": 5,
        "total_tokens": 12,
    }
    assert spans["answer[0] q-1"].attributes["latent.cache"] == "hit"
    assert {"answer[1]", "answer[2]"} <= set(spans)
    summary = spans["score (120 cached)"]
    assert summary.attributes["latent.cached_rows"] == 120
    assert summary.attributes["latent.map.size"] == 200
    assert (summary.attributes["latent.row.first"], summary.attributes["latent.row.last"]) == (
        0,
        119,
    )
    assert not any(name.startswith("score[") for name in spans)
    (trace,) = client.search_traces(locations=[run.experiment_id], run_id=run.run_id)
    assert trace.info.token_usage["total_tokens"] == 12


def test_results_outside_a_flow_run_do_nothing(client: Any) -> None:
    log_metric("nowhere", 1.0)
    log_table([{"a": 1}], "nowhere")
    with pytest.raises(ValueError, match="finite"):
        log_metric("bad", float("nan"))
    assert client.search_runs([e.experiment_id for e in client.search_experiments()]) == []


def test_standard_tags_say_who_and_where(client: Any, tmp_path: Path) -> None:
    source = tmp_path / "flows" / "tagged" / "flow.py"
    with flow_run("tagged", tags={"mlflow.source.name": str(source)}) as run:
        pass
    tags = client.get_run(run.run_id).data.tags
    assert tags["mlflow.source.name"] == str(source)
    assert tags["mlflow.source.type"] == "LOCAL"
    assert tags["mlflow.user"]


OFF_THE_CRITICAL_PATH = """
import json, sys, time
from latent.observe import configure_tracking, flow_run, span

configure_tracking(tracking_uri={uri!r}, experiment_prefix="bg-")
with flow_run("background", {{"p": 1}}) as run:
    first = {{"mlflow_ready": run.ready}}
    with span("first_task", "TOOL") as outer:
        with span("inner", "LLM") as inner:
            inner.set_outputs("done")
    time.sleep(0.01)
print(json.dumps({{**first, "run_id": run.run_id, "experiment_id": run.experiment_id}}))
"""


@pytest.mark.slow
def test_first_task_does_not_wait_for_mlflow(client: Any, tracking_uri: str) -> None:
    """In a fresh process, spans start before MLflow is imported and open; they are replayed
    into the run's trace with their own start times and nesting."""
    code = textwrap.dedent(OFF_THE_CRITICAL_PATH.format(uri=tracking_uri))
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=240
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["mlflow_ready"] is False

    recorded = client.get_run(result["run_id"])
    (trace,) = client.search_traces(locations=[result["experiment_id"]])
    spans = {s.name: s for s in trace.data.spans}
    assert spans["inner"].parent_id == spans["first_task"].span_id
    assert spans["first_task"].parent_id == spans["background"].span_id
    assert spans["inner"].outputs == "done"
    # The spans began before MLflow had a run to put them in.
    assert spans["first_task"].start_time_ns // 1_000_000 <= recorded.info.start_time
    assert recorded.data.params == {"p": "1"}


WORKER = """
import pickle, sys
import mlflow
from latent.observe import continue_trace, log_metric, log_table

link = pickle.loads(bytes.fromhex(sys.argv[1]))
with continue_trace(link):
    log_metric("worker_metric", 3.0)
    log_table([{"row": 1, "ok": True}], "worker_table")
    mlflow.log_metric("worker_mlflow", 4.0)  # MLflow's own API, in the worker process
print("worker done")
"""


@pytest.mark.slow
def test_results_from_a_worker_process_land_in_the_flow_run(
    client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Dask / Ray / process-pool worker gets the flow's `trace_link` with its task."""
    import pickle

    from latent.observe import trace_link

    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(WORKER))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with flow_run("distributed") as run:
        link = trace_link()
        done = subprocess.run(
            [sys.executable, str(script), pickle.dumps(link).hex()],
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
    assert done.returncode == 0, done.stderr
    metrics = client.get_run(run.run_id).data.metrics
    assert (metrics["worker_metric"], metrics["worker_mlflow"]) == (3.0, 4.0)
    table = client.load_table(run.experiment_id, "worker_table.json", run_ids=[run.run_id])
    assert table["row"].tolist() == [1]
