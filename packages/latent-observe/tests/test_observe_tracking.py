"""Flow runs, params, metrics and spans recorded in a real MLflow SQLite store and read back."""

from __future__ import annotations

import os
import socket
import subprocess
from concurrent.futures import ThreadPoolExecutor
from contextvars import copy_context
from typing import Any

import pandas as pd
import pytest

from latent.observe import (
    SPAN_TYPES,
    configure_tracking,
    flow_run,
    record_task,
    span,
    tracking_warnings,
    validate_span_type,
)


def _traces(client: Any, experiment_id: str) -> list[Any]:
    return client.search_traces(locations=[experiment_id])


def _spans(trace: Any) -> dict[str, Any]:
    return {s.name: s for s in trace.data.spans}


def test_flow_run_records_experiment_run_params_and_tags(client: Any) -> None:
    params = {"batch_size": 32, "llm": {"model": "gpt-4", "api_key": "sk-1"}, "prompt": "p" * 7000}

    with flow_run("my_flow", params, tags={"team": "evals"}) as run:
        assert run.active

    experiment = client.get_experiment_by_name("test-my_flow")
    recorded = client.get_run(run.run_id)
    assert recorded.info.experiment_id == experiment.experiment_id == run.experiment_id
    assert recorded.info.status == "FINISHED"
    assert recorded.info.run_name.startswith("my_flow-")
    assert len(recorded.info.run_name) == len("my_flow-20250101-120000")
    assert recorded.data.params["batch_size"] == "32"
    assert recorded.data.params["llm.model"] == "gpt-4"
    assert recorded.data.params["llm.api_key"] == "***"
    assert len(recorded.data.params["prompt"]) == 6000
    tags = recorded.data.tags
    assert (tags["team"], tags["latent.environment"]) == ("evals", "dev")
    assert tags["latent.flow"] == "my_flow"
    assert tags["latent.version"]


def test_git_sha_tag_inside_a_git_repo(client: Any, tmp_path: Any, monkeypatch: Any) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-c", "user.email=a@b.c", "-c", "user.name=t", "-C", str(repo)]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "x"], check=True)
    sha = subprocess.run(
        [*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()
    monkeypatch.chdir(repo)

    with flow_run("git_flow") as run:
        pass

    assert client.get_run(run.run_id).data.tags["mlflow.source.git.commit"] == sha


def test_subflow_is_a_nested_run_and_a_failure_is_failed(client: Any) -> None:
    with flow_run("main_flow") as main:
        with flow_run("subflow") as sub:
            pass
        with pytest.raises(ValueError), flow_run("subflow") as failing:
            raise ValueError("bad batch")

    runs = {r.info.run_id: r for r in client.search_runs([main.experiment_id])}
    assert runs[sub.run_id].data.tags["mlflow.parentRunId"] == main.run_id
    assert runs[sub.run_id].info.status == "FINISHED"
    assert runs[failing.run_id].info.status == "FAILED"
    assert runs[main.run_id].info.status == "FINISHED"


def test_task_metrics_are_batched_and_cache_counts_logged(client: Any) -> None:
    with flow_run("metrics_flow") as run:
        for index in range(1200):
            record_task("process_row", duration_s=0.01, success=index != 7, cached=index % 2 == 0)
        record_task("load", duration_s=1.5, success=True, rows_in=10, rows_out=8)

    history = client.get_metric_history(run.run_id, "task.process_row.duration")
    status = client.get_metric_history(run.run_id, "task.process_row.status")
    metrics = client.get_run(run.run_id).data.metrics
    assert len(history) == 1200  # more than one log_batch holds
    assert sorted(m.step for m in history) == list(range(1200))
    assert [m.value for m in sorted(status, key=lambda m: m.step)][6:9] == [1.0, 0.0, 1.0]
    assert metrics["task.load.duration"] == 1.5
    assert (metrics["task.load.rows_in"], metrics["task.load.rows_out"]) == (10.0, 8.0)
    assert metrics["task.process_row.cache_hits"] == 600
    assert metrics["task.process_row.cache_misses"] == 600
    assert (metrics["cache.hits"], metrics["cache.misses"]) == (600, 601)


def test_record_task_outside_a_flow_run_is_a_no_op(tracking_uri: str) -> None:
    record_task("lonely", duration_s=1.0, success=True)  # must not raise


def test_spans_nest_under_the_flow_trace_with_types_and_summaries(client: Any) -> None:
    frame = pd.DataFrame({"value": range(100)})

    with (
        flow_run("data_pipeline", {"batch_size": 4}) as run,
        span("clean", "CHAIN", inputs={"raw_data": frame, "token": "t"}) as clean,
    ):
        with span("lookup", "RETRIEVER", attributes={"index": "docs"}) as lookup:
            lookup.set_outputs(["doc"] * 3)
        clean.set_attribute("rows_dropped", 3)
        clean.set_outputs("x" * 2000)

    (trace,) = _traces(client, run.experiment_id)
    spans = _spans(trace)
    assert trace.info.request_metadata["mlflow.sourceRun"] == run.run_id
    assert spans["data_pipeline"].parent_id is None
    assert spans["clean"].parent_id == spans["data_pipeline"].span_id
    assert spans["lookup"].parent_id == spans["clean"].span_id
    assert (spans["clean"].span_type, spans["lookup"].span_type) == ("CHAIN", "RETRIEVER")
    assert spans["clean"].inputs["raw_data"]["shape"] == [100, 1]
    assert spans["clean"].inputs["token"] == "***"
    assert spans["clean"].outputs.endswith("(+1500 chars)")
    assert spans["clean"].attributes["rows_dropped"] == 3
    assert spans["lookup"].attributes["index"] == "docs"
    assert spans["lookup"].outputs == ["doc", "doc", "doc"]
    assert clean.attributes == {"rows_dropped": 3}


def test_a_failing_span_is_marked_error(client: Any) -> None:
    with pytest.raises(KeyError), flow_run("failing_flow") as run, span("boom", "TOOL"):
        raise KeyError("missing")

    (trace,) = _traces(client, run.experiment_id)
    assert _spans(trace)["boom"].status.status_code == "ERROR"
    assert client.get_run(run.run_id).info.status == "FAILED"


def test_spans_in_worker_threads_attach_to_the_flow_trace(client: Any) -> None:
    def work(index: int) -> int:
        with span(f"item-{index}", "TOOL"), span(f"llm-{index}", "LLM"):
            record_task("process_item", duration_s=0.1, success=True)
        return index

    with flow_run("parallel_flow") as run:
        # A plain pool does not copy context: falls back to the single active flow run.
        with span("fan_out", "AGENT"), ThreadPoolExecutor(4) as pool:
            assert list(pool.map(work, range(4))) == [0, 1, 2, 3]
        # Prefect's pool copies the context: the parent is the submitting context's span.
        with span("copied", "CHAIN"), ThreadPoolExecutor(2) as pool:
            futures = [pool.submit(copy_context().run, work, i) for i in (10, 11)]
            assert [f.result() for f in futures] == [10, 11]

    (trace,) = _traces(client, run.experiment_id)
    spans = _spans(trace)
    assert len(spans) == 1 + 1 + 8 + 1 + 4
    for index in range(4):
        assert spans[f"item-{index}"].parent_id == spans["fan_out"].span_id
        assert spans[f"llm-{index}"].parent_id == spans[f"item-{index}"].span_id
    for index in (10, 11):
        assert spans[f"item-{index}"].parent_id == spans["copied"].span_id
    history = client.get_metric_history(run.run_id, "task.process_item.duration")
    assert len(history) == 6


def test_mlflow_start_span_inside_a_latent_span_nests(client: Any) -> None:
    import mlflow

    with flow_run("user_code") as run, span("task", "CHAIN"), mlflow.start_span("autolog", "LLM"):
        pass

    spans = _spans(_traces(client, run.experiment_id)[0])
    assert spans["autolog"].parent_id == spans["task"].span_id


def test_disabled_tracking_runs_the_body_with_one_warning(monkeypatch: Any) -> None:
    monkeypatch.setenv("LATENT_MLFLOW_ENABLED", "0")
    configure_tracking(tracking_uri="sqlite:///unused.db")
    before = len(tracking_warnings())
    ran = []

    with flow_run("quiet_flow") as run, flow_run("sub"):
        for index in range(5):
            with span("t", "TOOL") as handle:
                handle.set_outputs(index)
                handle.set_attribute("i", index)
            record_task("t", duration_s=0.0, success=True)
            ran.append(index)

    new = tracking_warnings()[before:]
    assert ran == [0, 1, 2, 3, 4]
    assert (run.active, run.run_id) == (False, None)
    assert handle.attributes == {"i": 4} and handle.outputs == 4
    assert len(new) == 1 and "LATENT_MLFLOW_ENABLED=0" in new[0]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_server_runs_the_body_with_one_warning() -> None:
    uri = f"http://127.0.0.1:{_closed_port()}"
    configure_tracking(tracking_uri=uri, connect_timeout_s=1.0)
    before = len(tracking_warnings())
    ran = []

    for _ in range(2):  # one warning per flow run, not per task
        with flow_run("offline_flow", {"a": 1}) as run:
            for index in range(20):
                with span("task", "TOOL"):
                    record_task("task", duration_s=0.1, success=True)
                ran.append(index)

    new = tracking_warnings()[before:]
    assert len(ran) == 40
    assert run.active is False
    assert len(new) == 2
    assert uri in new[0] and "did not answer within 1s" in new[0]


def test_span_types_match_mlflow_and_unknown_types_fail_clearly() -> None:
    from mlflow.entities import SpanType

    known = {value for name, value in vars(SpanType).items() if not name.startswith("_")}
    assert known == SPAN_TYPES
    assert validate_span_type("RETRIEVER") == "RETRIEVER"
    with pytest.raises(ValueError, match=r"Unknown span type 'llm' \(did you mean 'LLM'\?\)"):
        validate_span_type("llm")
    with pytest.raises(ValueError, match="AGENT, CHAIN, CHAT_MODEL"):
        validate_span_type("BOGUS")


def test_span_outside_a_flow_is_a_working_no_op(tracking_uri: str) -> None:
    with span("alone", "TOOL", inputs={"x": 1}) as handle:
        handle.set_outputs({"password": "p"})

    assert handle.active is False
    assert handle.outputs == {"password": "***"}


def test_a_second_store_in_the_same_process_gets_its_own_runs(
    tmp_path: Any, template_store: Any, monkeypatch: Any
) -> None:
    """MLflow exports MLFLOW_TRACKING_URI when its global URI is set; Latent must not leave it
    behind, or the next project opened in the process (whose settings honour that variable)
    would record into this one's store."""
    import shutil

    from mlflow import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uris = []
    for name in ("a", "b"):
        path = tmp_path / name / "mlflow.db"
        path.parent.mkdir()
        shutil.copyfile(template_store, path)
        uris.append(f"sqlite:///{path}")
        configure_tracking(tracking_uri=uris[-1], experiment_prefix="test-")
        with flow_run(f"flow_{name}"):
            pass
        assert "MLFLOW_TRACKING_URI" not in os.environ
    for name, uri in zip(("a", "b"), uris, strict=True):
        names = [e.name for e in MlflowClient(uri).search_experiments()]
        assert f"test-flow_{name}" in names
        assert f"test-flow_{'b' if name == 'a' else 'a'}" not in names
