"""Pins the private MLflow APIs that `_mlflow_compat` uses: an MLflow upgrade that moves one
fails here, by name, before a user sees spans un-nested or `mlflow.log_metric` go astray."""

from __future__ import annotations

import inspect
from typing import Any

from latent.observe import _mlflow_compat, flow_run
from latent.observe._mlflow_compat import FlowRunStack


def test_fluent_active_run_stack_is_a_thread_local_stack(client: Any) -> None:
    from mlflow.tracking import fluent

    with flow_run("compat"):
        pass  # the first backend installs Latent's stack
    stack = fluent._active_run_stack
    assert isinstance(stack, FlowRunStack)
    for method in ("get", "set", "get_all_thread_values", "reset"):
        assert callable(getattr(stack.original, method))
    assert stack.original.get() == []
    # the fluent functions Latent relies on still read the stack through `.get()`
    for function in (fluent.active_run, fluent.end_run, fluent._get_or_start_run):
        assert "_active_run_stack.get()" in inspect.getsource(function)


def test_tracing_internals_exist() -> None:
    from mlflow.tracing.provider import get_context_api, safe_set_span_in_context
    from mlflow.tracing.trace_manager import InMemoryTraceManager
    from mlflow.tracing.utils import generate_mlflow_trace_id_from_otel_trace_id

    assert callable(safe_set_span_in_context) and callable(get_context_api)
    assert "is_remote_trace" in inspect.signature(InMemoryTraceManager.register_trace).parameters
    assert callable(InMemoryTraceManager.pop_trace)
    assert generate_mlflow_trace_id_from_otel_trace_id(1).startswith("tr-")


def test_trace_export_queue_internals_exist(client: Any) -> None:
    """`wait_trace_export` and `skip_exit_flush`: MLflow's batch processors, their exporters'
    async queues (a `queue.Queue` counting unfinished tasks) and the queue's at-exit flush."""
    import queue

    from mlflow.tracing.processor import base_mlflow
    from mlflow.tracing.provider import _get_trace_exporter

    from latent.observe._mlflow_compat import _trace_export_queues, wait_trace_export

    with flow_run("compat-queues"):
        pass  # a trace was exported: the processors and queues exist
    assert hasattr(base_mlflow._batch_processor_registry_lock, "acquire")
    assert callable(_get_trace_exporter)
    processors, queues = _trace_export_queues()
    assert queues, "no async trace export queue found"
    for found in queues:
        assert isinstance(found._queue, queue.Queue)
        assert callable(found._at_exit_callback)
    for processor in processors:
        assert callable(processor.force_flush)
    assert wait_trace_export(30.0)


def test_the_writer_modules_the_shared_writer_preloads_still_exist() -> None:
    # each is an MLflow-internal module path; one that moved would only cost a run its import
    assert _mlflow_compat.preload_writer_modules() == []


def test_span_upserts_are_one_cached_statement_and_keep_mlflows_upsert(
    tmp_path: Any, template_store: Any
) -> None:
    """`cached_span_upserts` (the writer process installs it): MLflow's private
    ``sqlalchemy_store._upsert_batch`` keeps its parameters, and with Latent's version spans are
    stored, stored again without duplicates (the ON CONFLICT update), and a column that changed
    is updated."""
    import shutil

    import mlflow
    from mlflow.entities import Span
    from mlflow.store.tracking import sqlalchemy_store
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    original = sqlalchemy_store._upsert_batch
    assert list(inspect.signature(original).parameters) == (_mlflow_compat._UPSERT_BATCH_PARAMETERS)
    path = tmp_path / "mlflow.db"
    shutil.copyfile(template_store, path)
    uri = f"sqlite:///{path}"
    try:
        assert _mlflow_compat.cached_span_upserts()
        assert _mlflow_compat.cached_span_upserts()  # once: MLflow's function is kept inside
        mlflow.set_tracking_uri(uri)
        client = mlflow.MlflowClient(uri)
        experiment = client.create_experiment("upserts")
        root = mlflow.start_span_no_context("root", experiment_id=experiment)
        for i in range(250):  # three of MLflow's 100-row batches
            child = mlflow.start_span_no_context(f"row[{i}]", parent_span=root, inputs={"x": i})
            child.end(outputs=i * 2)
        root.end(outputs="done")
        mlflow.flush_trace_async_logging()
        (trace,) = client.search_traces(locations=[experiment])
        spans = trace.data.spans
        assert len(spans) == 251
        assert {s.name: s.outputs for s in spans}["row[7]"] == 14

        store = SqlAlchemyStore(uri, str(tmp_path / "artifacts"))
        renamed = next(span for span in spans if span.name == "row[7]").to_dict()
        renamed["name"] = "row[7] renamed"
        store.log_spans(experiment, spans)  # again: updated in place, not duplicated
        store.log_spans(experiment, [Span.from_dict(renamed)])  # a changed one: updated
        (again,) = client.search_traces(locations=[experiment])
        assert sorted(s.span_id for s in again.data.spans) == sorted(s.span_id for s in spans)
        outputs = {s.name: s.outputs for s in again.data.spans}
        assert outputs["row[7] renamed"] == 14 and "row[7]" not in outputs
    finally:
        sqlalchemy_store._upsert_batch = original
        mlflow.set_tracking_uri(None)
