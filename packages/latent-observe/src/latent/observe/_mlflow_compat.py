"""The one module that touches MLflow's private APIs; each use says why. Pinned by a test.

If an MLflow release moves one of these, the test `test_observe_compat.py` fails first, and the
functions here degrade (a span not nested, a run not made active) rather than break a flow.
"""

from __future__ import annotations

import atexit
import contextlib
import inspect
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

#: Latent's provider of "the MLflow run of the flow this code runs in" (an ``ActiveRun``).
RunProvider = Callable[[], Any]


class FlowRunStack:
    """Stands in for MLflow's thread-local stack of active runs (`_active_run_stack`).

    MLflow's fluent API (`mlflow.log_metric`, `mlflow.active_run`, ...) reads the active run from
    a stack kept per thread, so a worker thread or another flow's coroutine sees none and
    `mlflow.log_metric` starts a stray run in experiment "Default". This stack answers with the
    runs the user started in this thread, if any, else with the run of the flow whose context
    this is (Latent's context variables follow Prefect's threads and coroutines).
    """

    def __init__(self, original: Any, provider: RunProvider) -> None:
        self.original = original
        self.provider = provider

    def get(self) -> list[Any]:
        own: list[Any] = self.original.get()
        if own:
            return own
        flow_run = self.provider()
        return own if flow_run is None else _FlowFloor(own, flow_run)

    def set(self, value: Any) -> None:
        self.original.set(value)

    def get_all_thread_values(self) -> dict[int, Any]:
        return dict(self.original.get_all_thread_values())

    def reset(self) -> None:
        self.original.reset()


class _FlowFloor(list[Any]):
    """The flow's run under the user's own runs: what they start nests on it, and ends with them.

    `mlflow.end_run()` with no run of the user's own would end the flow's run under Latent; it
    raises instead, saying whose run that is.
    """

    def __init__(self, own: list[Any], flow_run: Any) -> None:
        super().__init__([flow_run])
        self.own = own

    def append(self, run: Any) -> None:
        self.own.append(run)
        super().append(run)

    def pop(self, index: Any = -1) -> Any:
        if len(self) == 1:
            raise RuntimeError(
                f"mlflow.end_run(): run {self[0].info.run_id} is the flow's run; Latent ends it "
                "when the flow ends. End only runs you started with mlflow.start_run()."
            )
        self.own.pop(index)
        return super().pop(index)


def install_flow_run_stack(provider: RunProvider) -> bool:
    """Make the flow's run MLflow's active run wherever Latent runs code (see `FlowRunStack`).

    Private API: ``mlflow.tracking.fluent._active_run_stack`` (a ``ThreadLocalVariable`` every
    fluent call reads through ``.get()``). Installed once per process; False if MLflow moved it.
    """
    try:
        from mlflow.tracking import fluent
    except ImportError:
        return False
    current = getattr(fluent, "_active_run_stack", None)
    if current is None or not hasattr(current, "get"):
        return False
    if isinstance(current, FlowRunStack):
        current.provider = provider
        return True
    fluent._active_run_stack = FlowRunStack(current, provider)  # type: ignore[assignment]
    return True


@contextlib.contextmanager
def span_in_context(span: Any) -> Iterator[None]:
    """Make `span` MLflow's current span here, so `mlflow.start_span` calls nest under it.

    Private API: ``mlflow.tracing.provider.safe_set_span_in_context``, the context manager
    MLflow's own `start_span` uses. If it moves, spans still record, un-nested.
    """
    manager: contextlib.AbstractContextManager[Any]
    try:
        from mlflow.tracing.provider import safe_set_span_in_context

        manager = safe_set_span_in_context(span)
    except Exception:
        manager = contextlib.nullcontext()
    with manager:
        yield


def tracing_context_api() -> Any:
    """The OpenTelemetry context MLflow's tracer reads (its own, unless unified with OTel's).

    Private API: ``mlflow.tracing.provider.get_context_api``; older MLflow used OTel's global.
    """
    try:
        from mlflow.tracing.provider import get_context_api

        return get_context_api()
    except ImportError:
        from opentelemetry import context

        return context


def register_remote_trace(otel_trace_id: int, experiment_id: str) -> bool:
    """Tell MLflow's trace manager about a trace whose root lives in another process.

    Private API: ``InMemoryTraceManager.register_trace(..., is_remote_trace=True)`` and
    ``generate_mlflow_trace_id_from_otel_trace_id`` — the registration MLflow's
    ``set_tracing_context_from_http_request_headers`` makes, held for as long as this process has
    tasks in the trace (MLflow's helper drops it on exit, before its exporter sent the spans).
    False when the trace is already this process's own.
    """
    from mlflow.entities.trace_info import TraceInfo, TraceState
    from mlflow.entities.trace_location import TraceLocation
    from mlflow.tracing.trace_manager import InMemoryTraceManager
    from mlflow.tracing.utils import generate_mlflow_trace_id_from_otel_trace_id

    manager = InMemoryTraceManager.get_instance()
    trace_id = generate_mlflow_trace_id_from_otel_trace_id(otel_trace_id)
    with manager.get_trace(trace_id) as existing:
        if existing is not None:
            return False
    info = TraceInfo(
        trace_id=trace_id,
        trace_location=TraceLocation.from_experiment_id(experiment_id),
        request_time=None,  # type: ignore[arg-type]  # set by the flow's process, which owns it
        state=TraceState.IN_PROGRESS,
    )
    manager.register_trace(otel_trace_id, info, is_remote_trace=True)
    return True


def forget_remote_trace(otel_trace_id: int) -> None:
    """Drop a registration made by `register_remote_trace` (private: ``pop_trace``)."""
    from mlflow.tracing.trace_manager import InMemoryTraceManager

    InMemoryTraceManager.get_instance().pop_trace(otel_trace_id)


def _trace_export_queues() -> tuple[list[Any], list[Any]]:
    """MLflow's batch span processors and the async write queues of their exporters.

    Private APIs: ``mlflow.tracing.processor.base_mlflow._batch_processor_registry`` (every
    processor that batches spans, under ``_batch_processor_registry_lock``), each processor's
    ``span_exporter``, ``mlflow.tracing.provider._get_trace_exporter`` (the exporter when spans
    are not batched) and an exporter's ``_async_queue`` (an ``AsyncTraceExportQueue``).
    """
    from mlflow.tracing.processor import base_mlflow
    from mlflow.tracing.provider import _get_trace_exporter

    with base_mlflow._batch_processor_registry_lock:
        processors = list(base_mlflow._batch_processor_registry)
    exporters = [getattr(p, "span_exporter", None) for p in processors] + [_get_trace_exporter()]
    queues: list[Any] = []
    for exporter in exporters:
        found = getattr(exporter, "_async_queue", None)
        if found is not None and all(found is not known for known in queues):
            queues.append(found)
    return processors, queues


def wait_trace_export(timeout_s: float) -> bool:
    """Wait, at most `timeout_s`, until every ended span is written; True if all were.

    `mlflow.flush_trace_async_logging` stops the writer threads and starts them again, which
    costs up to a second per call (its consumer polls its queue once a second) and has no
    bound when the store hangs. This waits on the queue itself: spans handed to the batch
    processors are pushed on (OpenTelemetry's public ``force_flush``), then each async queue's
    ``queue.Queue`` (private ``_queue``) is waited on until its ``unfinished_tasks`` is 0.
    Falls back to MLflow's flush, in a thread joined with the bound, if these moved.
    """
    deadline = time.monotonic() + timeout_s
    try:
        processors, queues = _trace_export_queues()
        inner = [queue._queue for queue in queues]
    except Exception:
        return _public_flush(timeout_s)
    for processor in processors:
        remaining_ms = max(0, int((deadline - time.monotonic()) * 1000))
        with contextlib.suppress(Exception):
            processor.force_flush(remaining_ms)
    for waiting in inner:
        with waiting.all_tasks_done:
            done = waiting.all_tasks_done.wait_for(
                lambda q=waiting: q.unfinished_tasks == 0,
                timeout=max(0.0, deadline - time.monotonic()),
            )
        if not done:
            return False
    return True


def _public_flush(timeout_s: float) -> bool:
    import mlflow

    flusher = threading.Thread(
        target=mlflow.flush_trace_async_logging, name="latent-mlflow-flush", daemon=True
    )
    flusher.start()
    flusher.join(timeout_s)
    return not flusher.is_alive()


def skip_exit_flush() -> None:
    """Drop MLflow's own at-exit flush of its trace queues (private ``_at_exit_callback``).

    Latent drains them itself with a bound (`_tracking.drain`); MLflow's flush has none, so a
    tracking server that stopped answering would hold the process's exit for minutes, and it
    logs "Flushing the async trace logging queue..." on every exit.
    """
    with contextlib.suppress(Exception):
        for queue in _trace_export_queues()[1]:
            atexit.unregister(queue._at_exit_callback)


#: MLflow's internal modules a writer imports lazily, after `import mlflow`, to open a SQL store
#: (the store and its migrations), record a trace and log a table: ~1 s of imports. The shared
#: writer imports them before it forks (`_shared.zygote`) so that no run pays them. Module paths,
#: not functions: one that moves is only imported later, by the writer that needs it.
WRITER_MODULES = (
    "mlflow.store.tracking.sqlalchemy_store",
    "mlflow.store.db.utils",
    "alembic.command",
    "alembic.runtime.migration",
    "mlflow.tracing.export",
    "mlflow.tracing.processor",
    "mlflow.pyfunc",
    "git",
    "pandas",  # tables arrive as pickled DataFrames
)


def preload_writer_modules() -> list[str]:
    """Import MLflow and `WRITER_MODULES`; the names that could not be imported."""
    import importlib

    from latent.observe._mlflow import import_mlflow

    import_mlflow()
    missing = []
    for name in WRITER_MODULES:
        try:
            importlib.import_module(name)
        except Exception:
            missing.append(name)
    return missing


def cached_span_upserts() -> bool:
    """Have MLflow's SQL store write spans with one cached statement per batch, in this process.

    ``log_spans`` stores a batch of spans 100 rows at a time through the private module
    function ``mlflow.store.tracking.sqlalchemy_store._upsert_batch``, which builds
    ``insert(table).values(rows)``: a multi-row INSERT that SQLAlchemy cannot cache, so each
    100 rows are compiled anew (~15 ms of CPU: a third of what a span cost the writer process).
    The same statement without the rows, executed with them as parameters (``executemany``), is
    compiled once and cached: the same rows, the same ON CONFLICT update. Rows whose keys differ
    (the multi-row form fills the gaps), and dialects other than SQLite and PostgreSQL, keep
    MLflow's function. Only for Latent's writer process, never in a user's: True if installed.
    """
    try:
        from mlflow.store.tracking import sqlalchemy_store as store
    except Exception:
        return False
    original = getattr(store, "_upsert_batch", None)
    if original is None or getattr(original, "_latent_cached", False):
        return original is not None
    try:
        parameters = list(inspect.signature(original).parameters)
    except (TypeError, ValueError):
        return False
    if parameters != _UPSERT_BATCH_PARAMETERS:
        return False

    def upsert_batch(
        session: Any,
        model_class: type,
        table: Any,
        rows: list[dict[str, Any]],
        pk_columns: list[str],
        update_columns: list[str],
        dialect: str,
    ) -> None:
        if dialect not in ("sqlite", "postgresql") or len({frozenset(r) for r in rows}) != 1:
            original(session, model_class, table, rows, pk_columns, update_columns, dialect)
            return
        from sqlalchemy.dialects import postgresql, sqlite

        stmt: Any = (sqlite.insert if dialect == "sqlite" else postgresql.insert)(table)
        if update_columns:
            stmt = stmt.on_conflict_do_update(
                index_elements=pk_columns,
                set_={col: stmt.excluded[col] for col in update_columns},
            )
        else:
            stmt = stmt.on_conflict_do_nothing()
        session.execute(stmt, rows)  # executemany: compiled once per table and columns

    upsert_batch._latent_cached = True  # type: ignore[attr-defined]
    store._upsert_batch = upsert_batch
    return True


#: ``_upsert_batch``'s parameters, as `cached_span_upserts` calls it.
_UPSERT_BATCH_PARAMETERS = [
    "session", "model_class", "table", "rows", "pk_columns", "update_columns", "dialect",
]  # fmt: skip
