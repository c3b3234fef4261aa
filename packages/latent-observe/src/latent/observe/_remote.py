"""Spans of work shipped to other processes (Dask, Ray, process pools) in the flow's own trace.

Context variables do not cross processes, so the flow's process hands a small picklable
`TraceLink` along with the work: the MLflow run, its experiment and the W3C ``traceparent`` of the
span the work was submitted under. In the worker, `continue_trace(link)` makes spans opened inside
it children of that span, in the same trace, exported to the same store (MLflow's distributed
tracing: spans are sent with ``log_spans``, which SQL stores and tracking servers accept).

Task metrics are not sent from workers: the flow's process records them from what the task
reports back, so per-run counters (cache hits and misses) and metric steps stay whole.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

from latent.observe import _mlflow, _mlflow_compat
from latent.observe._mlflow import Backend
from latent.observe._settings import current_settings, emit_warning
from latent.observe._tracking import (
    _RUN,
    _SPAN,
    FlowRunHandle,
    SpanNode,
    _active_lock,
    _active_runs,
    connect,
    resolve,
)

_TRACE_ID_PREFIX = "tr-"


@dataclass(frozen=True)
class TraceLink:
    """Where work running in another process attaches its spans (see the module docstring)."""

    tracking_uri: str
    experiment_id: str
    run_id: str
    flow_name: str
    traceparent: str


def trace_link() -> TraceLink | None:
    """A link to the current span of the recorded flow run; None when nothing is recorded."""
    run, parent, _ = resolve()
    if run is None or not run.recording or parent is None or not run.wait_ready():
        return None
    backend = run.backend
    if backend is None or parent.live is None or run.run_id is None or run.experiment_id is None:
        return None
    traceparent = _traceparent(parent.live)
    if traceparent is None:
        return None
    return TraceLink(
        tracking_uri=backend.tracking_uri,
        experiment_id=run.experiment_id,
        run_id=run.run_id,
        flow_name=run.flow_name,
        traceparent=traceparent,
    )


def _traceparent(live: Any) -> str | None:
    """W3C ``traceparent`` of an MLflow span: MLflow trace ids are ``tr-`` + the OTel trace id."""
    trace_id = str(getattr(live, "trace_id", "") or "")
    span_id = str(getattr(live, "span_id", "") or "")
    otel_trace_id = trace_id.removeprefix(_TRACE_ID_PREFIX)
    if len(otel_trace_id) != 32 or len(span_id) != 16:
        return None
    return f"00-{otel_trace_id}-{span_id}-01"


class LinkedRunHandle(FlowRunHandle):
    """The flow's run as seen from a worker: spans go to its trace, metrics stay with the flow."""

    _warned_runs: ClassVar[set[str]] = set()  # linked runs this process has warned about
    _warned_lock: ClassVar[threading.Lock] = threading.Lock()
    inline_ops = True

    def __init__(self, link: TraceLink, backend: Backend) -> None:
        super().__init__(link.flow_name, None)
        self._run_id = link.run_id
        self._experiment_id = link.experiment_id
        self._backend = backend
        self._opened.set_result(None)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None) -> None:
        """A user's metrics from a worker go straight to the flow's run."""
        timestamp = _mlflow.now_ms()
        batch = [(key, value, timestamp, step or 0) for key, value in metrics.items()]
        self.submit("log metrics", lambda backend, run_id: backend.log_metrics(run_id, batch))

    def record(self, task: str, **_: Any) -> None:
        """Workers report task metrics back to the flow's process instead (module docstring)."""

    def record_hits(self, task: str, count: int) -> None:
        """As `record`: the flow's process counts them."""

    def flush(self) -> None:
        """Nothing is buffered here."""

    def degrade(self, message: str) -> None:
        self._backend = None
        self._failed = True
        with LinkedRunHandle._warned_lock:
            if self.run_id in LinkedRunHandle._warned_runs:
                return
            LinkedRunHandle._warned_runs.add(str(self.run_id))
        emit_warning(
            f"flow '{self.flow_name}' (worker process): {message}; spans of this "
            "process are not recorded, the tasks run"
        )


class _RemoteTraces:
    """The remote traces this process has tasks inside, counted, so overlapping tasks share one.

    MLflow exports a worker's spans only while it knows their trace; the registration is
    dropped (after a flush) when the last task of this process inside that trace finishes.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users: dict[int, list[Any]] = {}  # otel trace id -> [tasks inside, registered]

    def enter(self, link: TraceLink) -> tuple[int, Any]:
        from opentelemetry import trace as otel_trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        ctx = TraceContextTextMapPropagator().extract({"traceparent": link.traceparent})
        span_context = otel_trace.get_current_span(ctx).get_span_context()
        if not span_context.is_valid:
            raise ValueError(f"invalid traceparent {link.traceparent!r}")
        otel_trace_id = int(span_context.trace_id)
        with self._lock:
            if otel_trace_id not in self._users:
                registered = _register_remote_trace(otel_trace_id, link.experiment_id)
                self._users[otel_trace_id] = [0, registered]
            self._users[otel_trace_id][0] += 1
        return otel_trace_id, _context_api().attach(ctx)

    def leave(self, otel_trace_id: int, token: Any, backend: Backend) -> None:
        _context_api().detach(token)
        with self._lock:
            entry = self._users[otel_trace_id]
            entry[0] -= 1
            if entry[0] > 0:
                return
            if not entry[1]:  # the flow's own trace, in this very process: MLflow exports it
                del self._users[otel_trace_id]
                return
        try:
            if not _spans_sent_as_they_end:
                backend.flush_traces()  # export while MLflow still knows the trace
        finally:
            with self._lock:
                if self._users.get(otel_trace_id, [None])[0] == 0:
                    del self._users[otel_trace_id]
                    _forget_remote_trace(otel_trace_id)


_remote_traces = _RemoteTraces()


def _context_api() -> Any:
    return _mlflow_compat.tracing_context_api()


def _register_remote_trace(otel_trace_id: int, experiment_id: str) -> bool:
    return _mlflow_compat.register_remote_trace(otel_trace_id, experiment_id)


def _forget_remote_trace(otel_trace_id: int) -> None:
    _mlflow_compat.forget_remote_trace(otel_trace_id)


_backends: dict[str, Backend | None] = {}
_spans_sent_as_they_end = False
ASYNC_TRACE_LOGGING_ENV = "MLFLOW_ENABLE_ASYNC_TRACE_LOGGING"
_backends_lock = threading.Lock()


def _backend_for(link: TraceLink) -> Backend | None:
    """The backend for a link's store, checked once per process; None (one warning) if down."""
    with _backends_lock:
        if link.tracking_uri in _backends:
            return _backends[link.tracking_uri]
        try:
            backend: Backend | None = connect(
                link.tracking_uri, current_settings().connect_timeout_s
            )
        except Exception as exc:
            emit_warning(
                f"flow '{link.flow_name}' (worker process): MLflow at {link.tracking_uri} cannot "
                f"record spans here ({exc}); the tasks run without them"
            )
            backend = None
        if backend is not None:
            backend.use_for_traces()  # a worker sends the spans of its tasks to their flow's store
            _send_spans_as_they_end()
        _backends[link.tracking_uri] = backend
        return backend


def _send_spans_as_they_end() -> None:
    """Have a worker process send each span to the store when it ends, in the task's thread.

    MLflow normally queues spans for a background exporter. A worker would then have to drain
    that queue before dropping its registration of the flow's trace, and MLflow's flush waits
    about a second for its consumer thread, once per task. Sent as they end, the spans are
    stored before the task returns, so nothing is lost if the runner stops the process right
    after. A user's own ``MLFLOW_ENABLE_ASYNC_TRACE_LOGGING`` wins. The flow's process itself
    (work that never left it) is left alone.
    """
    global _spans_sent_as_they_end
    if _spans_sent_as_they_end or _runs_in_this_process():
        return
    if ASYNC_TRACE_LOGGING_ENV in os.environ:
        return
    import mlflow.tracing

    os.environ[ASYNC_TRACE_LOGGING_ENV] = "false"
    mlflow.tracing.reset()  # the tracer provider reads the setting when it is (re)built
    _spans_sent_as_they_end = True


def _runs_in_this_process() -> bool:
    with _active_lock:
        return bool(_active_runs)


@contextmanager
def continue_trace(link: TraceLink | None) -> Iterator[None]:
    """Record spans opened inside this block under `link`'s span (in a worker process).

    A no-op when `link` is None or this context already belongs to a recorded flow run (the
    work did not leave the flow's process after all). MLflow problems give one warning per
    process and the block runs untraced.
    """
    if link is None or _RUN.get() is not None:
        yield
        return
    backend = _backend_for(link)
    if backend is None:
        yield
        return
    handle = LinkedRunHandle(link, backend)
    try:
        otel_trace_id, token = _remote_traces.enter(link)
    except Exception as exc:
        handle.degrade(f"MLflow could not continue the flow's trace ({exc})")
        yield
        return
    node = SpanNode(handle, name=link.flow_name, remote=True)
    handle._root = node
    run_token, span_token = _RUN.set(handle), _SPAN.set(node)
    try:
        yield
    finally:
        _SPAN.reset(span_token)
        _RUN.reset(run_token)
        handle._ended = True
        try:
            _remote_traces.leave(otel_trace_id, token, backend)
        except Exception as exc:
            handle.degrade(f"MLflow could not send this process's spans ({exc})")
