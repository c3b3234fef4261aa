"""Flow runs as MLflow runs, with batched task metrics and a root span per flow.

MLflow is off the critical path: a flow run's MLflow run is opened on the background thread
(`_background`), so importing MLflow and opening its store overlap the flow's first tasks. Spans
that start before the run is open are kept as *pending* nodes (name, inputs, times, outputs) and
replayed, with their own timestamps, once it is; metrics are buffered anyway. Whoever needs the
run itself (`run_id`, a trace link for a worker process, `mlflow.log_metric` in user code) waits
for the opening, with a bound.

State lives in context variables, so concurrent flows do not see each other and Prefect's worker
threads (which copy the context) see their flow. A plain ``ThreadPoolExecutor`` does not copy
it: a thread with no context of its own falls back to the process's single active flow run.
Every MLflow problem becomes one warning per top-level flow run; the flow body always runs.

A flow's end waits for its MLflow run to be ended, unless runs end in the background
(`defer_run_end`, what `latent run` does): the next flow starts while the last one's metrics,
end and spans are written, and `wait_for_tracking` (at exit, bounded) waits for all of them.
"""

from __future__ import annotations

import atexit
import functools
import getpass
import importlib.metadata
import itertools
import json
import logging
import math
import numbers
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from datetime import datetime
from pathlib import Path
from typing import Any

from latent.observe import _background, _mlflow, _mlflow_compat, _writer
from latent.observe._mlflow import Backend, TrackingUnavailable
from latent.observe._settings import (
    artifact_location,
    current_settings,
    emit_warning,
    tracking_enabled,
)
from latent.observe._summary import redact, summarize

#: Metrics are sent with one `log_batch` per this many records, or per this many seconds.
FLUSH_EVERY_RECORDS = 1000
FLUSH_EVERY_SECONDS = 30.0
#: MLflow params per run (the first keys); all parameters go to the artifact when there are more.
MAX_LOGGED_PARAMS = 200
PARAMS_ARTIFACT = "params.json"
PARAMS_TAG = "latent.params"
CRASHED_TAG = "latent.crashed"
#: How long anything waits for a run to open (importing MLflow on a loaded machine: ~10 s).
OPEN_WAIT_S = 120.0
#: How long a process's exit waits for its last MLflow writes (env var: seconds). A tracking
#: server may stop answering: its wait is short. A local store always makes progress (SQLite
#: waits for other writers with a bound of its own), if slowly on a busy machine: its wait only
#: catches what is truly stuck.
EXIT_WAIT_ENV = "LATENT_MLFLOW_EXIT_TIMEOUT"
EXIT_WAIT_SERVER_S = 15.0
EXIT_WAIT_LOCAL_S = 600.0
_defer_end = [False]

_METRIC_UNSAFE = re.compile(r"[^\w\-. /:]")
_span_lock = threading.RLock()  # guards pending spans and their replay


class SpanNode:
    """A span of a flow run: live in MLflow, pending (run not open yet), or another process's.

    `fallback` marks a span reached without context (see the module docstring); `remote`, the
    stand-in for a span of another process that a worker's spans continue (see `_remote`).
    """

    __slots__ = (
        "attributes",
        "end_ns",
        "error",
        "fallback",
        "inputs",
        "live",
        "name",
        "outputs",
        "parent",
        "pending",
        "remote",
        "root_of",
        "run",
        "span_type",
        "start_ns",
    )

    def __init__(
        self,
        run: FlowRunHandle,
        *,
        name: str = "",
        span_type: str = "CHAIN",
        parent: SpanNode | None = None,
        inputs: Any = None,
        attributes: Mapping[str, Any] | None = None,
        fallback: bool = False,
        remote: bool = False,
        root_of: FlowRunHandle | None = None,
    ) -> None:
        self.run = run
        self.name = name
        self.span_type = span_type
        self.parent = parent
        self.inputs = inputs
        self.attributes: dict[str, Any] = dict(attributes or {})
        self.fallback = fallback
        self.remote = remote
        self.root_of = root_of
        self.live: Any = None
        self.pending = False
        self.start_ns = time.time_ns()
        self.end_ns: int | None = None
        self.outputs: Any = None
        self.error: BaseException | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start in MLflow now if the run is open, else keep it pending until it is."""
        run = self.run
        with _span_lock:
            if not run.ready:
                self.pending = True
                run._pending.append(self)
                return
        if run._backend is not None and self._parent_ready():
            self._materialize(run._backend)
            self._end_if_ended()

    def set_attribute(self, key: str, value: Any) -> None:
        with _span_lock:
            self.attributes[key] = value
            live = self.live
        if live is not None:
            try:
                live.set_attribute(key, value)
            except Exception:
                self.live = None  # a broken span must not break the task

    def end(self, outputs: Any, error: BaseException | None) -> None:
        with _span_lock:
            self.outputs, self.error = outputs, error
            self.end_ns = time.time_ns()
            if self.pending:
                return
            live = self.live
        if live is not None:
            _end_live(self.run, live, outputs, error)

    # -- replay ------------------------------------------------------------------------------

    def _parent_ready(self) -> bool:
        parent = self.parent
        return parent is None or parent.remote or parent.live is not None

    def _materialize(self, backend: Backend) -> None:
        """Start the MLflow span, with the recorded start time."""
        parent = self.parent
        run = self.root_of
        new_trace = run is not None and parent is None  # a remote parent owns the trace
        if not self.run._traced:
            return  # another project's flow owns the trace store (see `_tracing`)
        attributes = dict(self.attributes)
        if run is not None:
            attributes["latent.run_id"] = run._run_id
        try:
            self.live = backend.start_span(
                self.name,
                self.span_type,
                parent=parent.live if parent is not None and not parent.remote else None,
                inputs=self.inputs,
                attributes=attributes,
                experiment_id=run._experiment_id if new_trace and run is not None else None,
                run_id=run._run_id if new_trace and run is not None else None,
                start_time_ns=self.start_ns,
            )
        except Exception as exc:
            self.run.degrade(f"MLflow could not start span '{self.name}' ({exc})")

    def _end_if_ended(self) -> None:
        if self.live is not None and self.end_ns is not None:
            _end_live(self.run, self.live, self.outputs, self.error, end_ns=self.end_ns)


def _end_live(
    run: FlowRunHandle,
    live: Any,
    outputs: Any,
    error: BaseException | None,
    *,
    end_ns: int | None = None,
) -> None:
    try:
        Backend.end_span(live, outputs=outputs, error=error, end_ns=end_ns)
    except Exception as exc:
        run.degrade(f"MLflow could not end a span ({exc})")


_RUN: ContextVar[FlowRunHandle | None] = ContextVar("latent_observe_run", default=None)
#: Where a top-level run's end is handed inside `runs_end_after` (see there).
_ENDS: ContextVar[list[Future[Any]] | None] = ContextVar("latent_observe_ends", default=None)
_SPAN: ContextVar[SpanNode | None] = ContextVar("latent_observe_span", default=None)
_active_runs: list[FlowRunHandle] = []
_active_lock = threading.Lock()
# Top-level runs whose spans go to MLflow's trace exporter, and the store each writes to. The
# exporter sends every trace of the process to one store (MLflow's global tracking URI), so
# while one project's flow is traced, another project's flow at the same time records its run,
# params and metrics in its own store but no spans: never into the other project's store.
_tracing: dict[int, str] = {}  # id(handle) -> tracking URI


class FlowRunHandle:
    """What `flow_run` yields: the MLflow run's ids, and whether it is being recorded.

    `run_id`, `experiment_id` and `active` wait for the run to open (see the module docstring);
    `ready` and `recording` never wait.
    """

    #: Run `submit`ted work in the caller's thread (a worker process's view of the flow's run).
    inline_ops = False
    #: Wait for the run before entering a pending span (see `_current_span`).
    nest_user_spans = False

    def __init__(self, flow_name: str, parent: FlowRunHandle | None) -> None:
        self.flow_name = flow_name
        self.parent = parent
        self._run_id: str | None = None
        self._experiment_id: str | None = None
        self._top: FlowRunHandle = parent._top if parent is not None else self
        self._backend: Backend | None = None
        self._failed = False
        self._traced = True  # False: another project's flow owns the process's trace store
        self._body_done = False
        self._warned = False  # meaningful on the top-level run only
        self._ended = False  # the flow left its run: nothing more is recorded into it
        self._finished = False  # its MLflow run was ended (or its end failed: `_end_failed`)
        self._end_failed = False
        self._after_end: list[Callable[[], Any]] = []
        self._opened: Future[None] = Future()
        self._lock = threading.Lock()
        self._metrics: list[tuple[str, float, int, int]] = []
        self._steps: dict[str, int] = {}
        self._cache_counts: dict[str, list[int]] = {}  # task -> [hits, misses]
        self._last_flush = time.monotonic()
        self._flush_queued = False  # a send is waiting on the background thread
        self._root: SpanNode | None = None
        self._open_spans: list[SpanNode] = []
        self._pending: list[SpanNode] = []
        self._ops: list[Future[Any]] = []
        self._active_run: Any = None
        self._root_node: SpanNode | None = None
        self._outputs: Any = None

    # -- state -------------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """True once opening finished (recorded or not); never waits."""
        return self._opened.done()

    @property
    def recording(self) -> bool:
        """True unless tracking is off, failed or the run ended; never waits."""
        return not self._failed and not self._ended

    def wait_ready(self, timeout_s: float = OPEN_WAIT_S) -> bool:
        """Wait (bounded) until the run is open; True if it is being recorded."""
        if not self.ready and _background.in_background():
            return False  # the background thread must not wait on its own queue
        try:
            self._opened.result(timeout=timeout_s)
        except Exception:
            return False
        return self._backend is not None and not self._finished

    @property
    def run_id(self) -> str | None:
        self.wait_ready()
        return self._run_id

    @property
    def experiment_id(self) -> str | None:
        self.wait_ready()
        return self._experiment_id

    @property
    def active(self) -> bool:
        """True while MLflow records this run (False when disabled, unavailable or failed)."""
        return self.wait_ready() and self._backend is not None and not self._finished

    @property
    def backend(self) -> Backend | None:
        return self._backend if self.ready else None

    @property
    def tracking_uri(self) -> str | None:
        """The store this run is recorded in, once open (None when not recorded)."""
        backend = self._backend if self.ready else None
        return backend.tracking_uri if backend is not None else None

    @property
    def trace_id(self) -> str | None:
        """The MLflow trace id of the flow's root span (None when not recorded)."""
        self.wait_ready()
        root = self._root_node
        live = root.live if root is not None else None
        return str(getattr(live, "trace_id", "") or "") or None

    def __repr__(self) -> str:
        return (
            f"FlowRunHandle(flow={self.flow_name!r}, run_id={self._run_id!r}, "
            f"recording={self.recording})"
        )

    def set_outputs(self, summary: Any) -> None:
        """What the flow's root span shows as its outputs (already a bounded summary)."""
        self._outputs = summary

    # -- degrading ---------------------------------------------------------------------------

    def degrade(self, message: str) -> None:
        """Stop recording this run (and its subflows); warn once per top-level run (and not
        after `wait_for_tracking` said that the last writes were not done)."""
        if self._backend is not None:
            _degraded_stores.add(self._backend.tracking_uri)
        self._backend = None
        self._failed = True
        top = self._top
        with top._lock:
            if top._warned or _exit_warned:
                return
            top._warned = True
        emit_warning(f"flow '{top.flow_name}': {message}; the flow runs without MLflow tracking")

    # -- opening -----------------------------------------------------------------------------

    def open(
        self,
        params: Mapping[str, Any] | None,
        tags: Mapping[str, str] | None,
        root: SpanNode | None,
    ) -> None:
        """Open the MLflow run and start `root`: inline under a ready parent, else in the
        background (see the module docstring)."""
        self._root_node = root
        if self.parent is None and not tracking_enabled():
            self.degrade(
                "MLflow tracking is disabled ([mlflow] enabled = false or LATENT_MLFLOW_ENABLED=0)"
            )
            self._opened.set_result(None)
            return
        if self.parent is not None and self.parent.ready:
            self._open(params or {}, tags or {})
            return
        settings = current_settings()
        args = (params or {}, tags or {})
        _background.submit(lambda: self._open(*args, settings=settings))

    def _open(
        self, params: Mapping[str, Any], tags: Mapping[str, str], settings: Any = None
    ) -> None:
        try:
            backend = self._connect(settings or current_settings())
            if backend is not None:
                self._traced = self._claim_traces(backend)
                try:
                    self._start_run(backend, settings or current_settings(), params, tags)
                except Exception as exc:
                    self.degrade(f"MLflow could not start a run at {backend.tracking_uri} ({exc})")
            self._replay()
        finally:
            if not self._opened.done():
                self._opened.set_result(None)

    def _claim_traces(self, backend: Backend) -> bool:
        """Whether this run's spans may go to its store (see `_tracing`); points MLflow's
        exporter at it if so. Subflows trace as their parent does."""
        if self.parent is not None:
            return self.parent._traced
        if getattr(backend, "own_process", False):
            return True  # a writer process per store: its traces go to that store only
        uri = backend.tracking_uri
        with _active_lock:
            busy = sorted(
                {other for key, other in _tracing.items() if key != id(self) and other != uri}
            )
            if not busy:
                backend.use_for_traces()
                if not self._body_done:
                    _tracing[id(self)] = uri
                return True
        emit_warning(
            f"flow '{self.flow_name}': its spans are not recorded while a flow of another "
            f"project (MLflow store {busy[0]}) is traced in this process: MLflow sends a "
            "process's traces to one store. Its run, params and metrics are recorded in "
            f"{uri}. Run the projects in separate processes to trace both."
        )
        return False

    def release_traces(self) -> None:
        """The flow's body ended: its trace store is free for another project's flow."""
        with _active_lock:
            self._body_done = True
            _tracing.pop(id(self), None)

    def _connect(self, settings: Any) -> Backend | None:
        if self.parent is not None:
            self.parent.wait_ready()
            return self.parent._backend
        try:
            writer = _writer.use_writer(self.nest_user_spans)
            return connect(settings.tracking_uri, settings.connect_timeout_s, writer=writer)
        except TrackingUnavailable as exc:
            self.degrade(str(exc))
        except Exception as exc:
            self.degrade(f"MLflow could not be set up for {settings.tracking_uri!r} ({exc})")
        return None

    def _start_run(
        self,
        backend: Backend,
        settings: Any,
        params: Mapping[str, Any],
        tags: Mapping[str, str],
    ) -> None:
        parent = self.parent
        if parent is not None and parent._experiment_id is not None:
            experiment_id = parent._experiment_id  # nested runs live with their parent
        else:
            root = artifact_location(settings) or _mlflow.default_artifact_root(
                backend.tracking_uri
            )
            experiment_id = backend.experiment_id(settings.experiment_prefix + self.flow_name, root)
        run_name = f"{self.flow_name}-{datetime.now():%Y%m%d-%H%M%S}"
        parent_run_id = parent._run_id if parent is not None else None
        run_tags = {**standard_tags(self.flow_name, settings.environment, tags), **tags}
        self._run_id = backend.start_run(experiment_id, run_name, run_tags, parent_run_id)
        self._experiment_id = experiment_id
        self._backend = backend
        self._log_params(backend, self._run_id, params)

    @staticmethod
    def _log_params(backend: Backend, run_id: str, params: Mapping[str, Any]) -> None:
        """At most `MAX_LOGGED_PARAMS` MLflow params; all of them in the artifact params.json.

        A parameters file can hold 100,000s of keys: one MLflow param each would take minutes
        and bury the few that matter. The first keys (file order) are params; when there are
        more, the run also gets every parameter (redacted) as ``params.json`` and a tag saying
        how many were logged as params.
        """
        flat = flatten_params(params)
        if not flat:
            return
        backend.log_params(run_id, dict(itertools.islice(flat.items(), MAX_LOGGED_PARAMS)))
        if len(flat) > MAX_LOGGED_PARAMS:
            backend.log_dict(run_id, redact(dict(params)), PARAMS_ARTIFACT)
            note = (
                f"{MAX_LOGGED_PARAMS} of {len(flat)} parameters are MLflow params; "
                f"all of them are in the artifact {PARAMS_ARTIFACT}"
            )
            backend.set_tags(run_id, {PARAMS_TAG: note})

    def _replay(self) -> None:
        """Start the spans that began before the run was open, in the order they began."""
        with _span_lock:
            pending, self._pending = self._pending, []
            backend = self._backend
            for node in pending:
                node.pending = False
                if backend is not None and not self._failed and node._parent_ready():
                    node._materialize(backend)
            # Children end before their parents: a trace is complete when its root ends.
            for node in reversed(pending):
                node._end_if_ended()
            self._opened.set_result(None)

    # -- work for the background thread ------------------------------------------------------

    def submit(self, what: str, fn: Callable[[Backend, str], Any]) -> None:
        """Run `fn(backend, run_id)` on the background thread once the run is open.

        Failures give the run's one warning (naming `what`); the flow goes on.
        """
        if not self.recording:
            return

        def work() -> None:
            backend, run_id = self._backend, self._run_id
            if backend is None or run_id is None:
                return
            try:
                fn(backend, run_id)
            except Exception as exc:
                self.degrade(f"MLflow could not {what} ({exc})")

        if self.inline_ops and self.ready:
            work()
            return
        future = _background.submit(work)
        with self._lock:
            self._ops = [op for op in self._ops if not op.done()]
            self._ops.append(future)

    def when_open(self, fn: Callable[[FlowRunHandle], Any]) -> None:
        """Call `fn(self)` once the run is open (recorded or not), before it ends.

        On the background thread when runs end there (`defer_run_end`) and the run is not open
        yet: the flow never waits for MLflow; else here (after waiting for the opening). An open
        run's `fn` runs here even then: what it writes elsewhere (Latent's link artifact in
        Prefect) is then written before the flow goes on, not at the same moment as the next
        flow's first write, which a SQLite-backed Prefect server may refuse (one of the two
        requests then waits 2 s for Prefect's retry). `fn` handles its own errors.
        """
        if _defer_end[0] and not self.ready:
            _background.submit(lambda: fn(self))
            return
        self.wait_ready()
        fn(self)

    def wait_ops(self, timeout_s: float = OPEN_WAIT_S) -> None:
        with self._lock:
            ops = list(self._ops)
        deadline = time.monotonic() + timeout_s
        for op in ops:
            with suppress(Exception):
                op.result(timeout=max(0.0, deadline - time.monotonic()))

    def flow_active_run(self) -> Any:
        """This run as MLflow's fluent API wants it (an ``mlflow.ActiveRun``), made once."""
        if not self.wait_ready() or self._backend is None:
            return None
        with self._lock:
            if self._active_run is None:
                import mlflow

                self._active_run = mlflow.ActiveRun(self._backend.client.get_run(self._run_id))
            return self._active_run

    # -- metrics -----------------------------------------------------------------------------

    def record(
        self,
        task: str,
        *,
        duration_s: float,
        success: bool,
        cached: bool,
        rows_in: int | None,
        rows_out: int | None,
    ) -> None:
        name = _METRIC_UNSAFE.sub("_", task)
        timestamp = _mlflow.now_ms()
        values = [("duration", float(duration_s)), ("status", 1.0 if success else 0.0)]
        if rows_in is not None:
            values.append(("rows_in", float(rows_in)))
        if rows_out is not None:
            values.append(("rows_out", float(rows_out)))
        with self._lock:
            for suffix, value in values:
                self._append(f"task.{name}.{suffix}", value, timestamp)
            counts = self._cache_counts.setdefault(name, [0, 0])
            counts[0 if cached else 1] += 1
        self._flush_if_due()

    def record_hits(self, task: str, count: int) -> None:
        """Count `count` cache hits of `task` at once (a map's cached rows): no per-call points."""
        name = _METRIC_UNSAFE.sub("_", task)
        with self._lock:
            self._cache_counts.setdefault(name, [0, 0])[0] += count

    def log_metrics(self, metrics: Mapping[str, float], step: int | None) -> None:
        """Buffer user metrics (sent like task metrics); `step=None` counts calls per key."""
        timestamp = _mlflow.now_ms()
        with self._lock:
            for key, value in metrics.items():
                name = _METRIC_UNSAFE.sub("_", key)
                if step is None:
                    self._append(name, value, timestamp)
                else:
                    self._metrics.append((name, value, timestamp, step))
        self._flush_if_due()

    def _flush_if_due(self) -> None:
        """Send the buffer on the background thread when due: a row (or the event loop of
        thousands of async rows) must not wait on a store write."""
        if not self.ready:
            return
        with self._lock:
            due = not self._flush_queued and (
                len(self._metrics) >= FLUSH_EVERY_RECORDS
                or time.monotonic() - self._last_flush >= FLUSH_EVERY_SECONDS
            )
            if due:
                self._flush_queued = True
        if due:
            self.submit("send metrics", self._flush_queued_batch)

    def _flush_queued_batch(self, _backend: Backend, _run_id: str) -> None:
        with self._lock:
            self._flush_queued = False
        self.flush()

    def _append(self, key: str, value: float, timestamp: int) -> None:
        step = self._steps.get(key, 0)
        self._steps[key] = step + 1
        self._metrics.append((key, value, timestamp, step))

    def flush(self) -> None:
        """Send buffered metrics and the cache counters so far in `log_batch` calls."""
        backend, run_id = self._backend, self._run_id
        if backend is None or run_id is None:
            return
        with self._lock:
            batch, self._metrics = self._metrics, []
            batch.extend(self._counter_metrics())
            self._last_flush = time.monotonic()
        if not batch:
            return
        try:
            backend.log_metrics(run_id, batch)
        except Exception as exc:
            self.degrade(f"MLflow could not log metrics at {backend.tracking_uri} ({exc})")

    def _counter_metrics(self) -> list[tuple[str, float, int, int]]:
        if not self._cache_counts:
            return []
        timestamp = _mlflow.now_ms()
        out: list[tuple[str, float, int, int]] = []
        hits = misses = 0
        for name, (task_hits, task_misses) in self._cache_counts.items():
            out.append((f"task.{name}.cache_hits", float(task_hits), timestamp, 0))
            out.append((f"task.{name}.cache_misses", float(task_misses), timestamp, 0))
            hits, misses = hits + task_hits, misses + task_misses
        out.append(("cache.hits", float(hits), timestamp, 0))
        out.append(("cache.misses", float(misses), timestamp, 0))
        return out

    # -- spans -------------------------------------------------------------------------------

    def add_open_span(self, node: SpanNode) -> None:
        if not node.fallback:
            with self._lock:
                self._open_spans.append(node)

    def remove_open_span(self, node: SpanNode) -> None:
        if not node.fallback:
            with self._lock, suppress(ValueError):
                self._open_spans.remove(node)

    def deepest_open_span(self) -> SpanNode | None:
        """The span a context-less worker thread attaches to: the latest one opened with context."""
        with self._lock:
            return self._open_spans[-1] if self._open_spans else self._root

    # -- closing -----------------------------------------------------------------------------

    def close(self, *, failed: bool) -> None:
        """Send the metrics left and end the run (FINISHED / FAILED).

        Here, after the opening and queued work (bounded), when runs end in the foreground;
        else queued behind them on the background thread (`defer_run_end`).
        """
        self._ended = True
        _exit_wait_last()
        if _defer_end[0]:
            _background.submit(lambda: self._finish(failed, traces=False))
            return
        ends = _ENDS.get()
        if ends is not None and not ends and self.parent is None:
            # after the opening and the queued work, as below; waited for by `runs_end_after`
            ends.append(_background.submit(lambda: self._finish(failed, traces=True)))
            return
        self.wait_ready()
        self.wait_ops()
        self._finish(failed, traces=self.parent is None)

    def _finish(self, failed: bool, *, traces: bool) -> None:
        backend, run_id = self._backend, self._run_id
        ended = True
        try:
            if backend is not None and run_id is not None:
                self.flush()
                try:
                    backend.end_run(run_id, failed=failed)
                    if traces:
                        backend.flush_traces(_exit_wait_s())
                except Exception as exc:
                    ended = False
                    self.degrade(f"MLflow could not end run {run_id} ({exc})")
        finally:
            with self._lock:
                self._finished = True
                self._end_failed = not ended
                callbacks, self._after_end = self._after_end, []
            for callback in callbacks if ended else ():
                with suppress(Exception):
                    callback()

    def after_end(self, fn: Callable[[], Any]) -> None:
        """Call `fn()` once the MLflow run is ended (or there was none to end), in the thread
        that ended it; at once if that happened already. Never when ending it failed (a store
        that stopped answering): the run is RUNNING, and the next run of the project marks it.
        `fn` must not raise."""
        with self._lock:
            if not self._finished:
                self._after_end.append(fn)
                return
            if self._end_failed:
                return
        fn()


def mark_runs_failed(tracking_uri: str, run_ids: list[str], reason: str) -> None:
    """Mark these runs FAILED where they are still RUNNING, with `reason` as the tag
    ``latent.crashed`` (runs of a process that died; see latent-prefect). In the background;
    a problem is logged at debug level only: it is about runs that already failed."""

    def mark() -> None:
        try:
            mlflow = _mlflow.import_mlflow()
            with _mlflow.store_setup(tracking_uri):
                client = mlflow.MlflowClient(tracking_uri=tracking_uri)
            for run_id in run_ids:
                run = client.get_run(run_id)
                if run.info.status == "RUNNING":
                    client.set_tag(run_id, CRASHED_TAG, reason[: _mlflow.MAX_TAG_VALUE_LEN])
                    client.set_terminated(run_id, "FAILED")
        except Exception as exc:
            logging.getLogger("latent.observe").debug(f"Could not mark runs failed: {exc}")

    _background.submit(mark)


def defer_run_end(defer: bool = True) -> None:
    """End flow runs' MLflow runs in the background, so that a flow's end never waits for MLflow.

    For a process that runs flows one after another (`latent run a b`): the next flow starts
    while the last run's metrics, end and spans are written; `wait_for_tracking` (called at
    exit, bounded) waits for them. Off by default: a flow called from a script or notebook
    returns with its run ended and readable.
    """
    _defer_end[0] = defer


@contextmanager
def runs_end_after() -> Iterator[None]:
    """The first top-level run that ends inside this block is ended when the block exits.

    A flow's end is the caller's too (Prefect records the final state and walks the returned
    value: 0.25 s for 10,000 results), and it need not wait for MLflow's: the run's metrics,
    end and last spans are written meanwhile, on the background thread, and the block's exit
    waits for them (bounded, as `close` does). The call still returns with its run ended.
    """
    ends: list[Future[Any]] = []
    token = _ENDS.set(ends)
    try:
        yield
    finally:
        _ENDS.reset(token)
        for end in ends:
            with suppress(Exception):  # `_finish` warns itself; a stuck store: the next run
                end.result(timeout=OPEN_WAIT_S + _exit_wait_s())


def wait_for_tracking(timeout_s: float | None = None, *, exiting: bool = False) -> bool:
    """Wait until this process's MLflow writes are done (runs ended, spans written); bounded.

    `timeout_s` defaults to ``LATENT_MLFLOW_EXIT_TIMEOUT``, else 15 s for a tracking server
    and 10 min for a local store (which always progresses, if slowly). A store that does not
    take the writes in time (a tracking server that stopped answering) gives one warning, and
    the process goes on: those runs are marked failed by the next run of the project.
    `exiting` also drops MLflow's own at-exit flush, which has no bound. True if all was done.
    """
    if not _background.started() and "mlflow" not in sys.modules:
        return True
    bound = _exit_wait_s() if timeout_s is None else timeout_s
    deadline = time.monotonic() + bound
    opened = _stores()
    stores = ", ".join(sorted(opened)) or "MLflow"  # before the writers close
    done = True
    if _background.started() and not _background.in_background():
        try:
            _background.submit(lambda: None).result(timeout=bound)
        except Exception:
            done = False
    if done and "mlflow" in sys.modules:
        done = _mlflow_compat.wait_trace_export(max(0.0, deadline - time.monotonic()))
    if done:
        done = _writer.flush_all(max(0.0, deadline - time.monotonic()))
    if exiting:
        atexit.unregister(_at_exit)  # waited once; a flow run after this registers it again
        if "mlflow" in sys.modules:
            _mlflow_compat.skip_exit_flush()
        done = _writer.close_all(max(0.0, deadline - time.monotonic())) and done
    if done:
        _exit_warned.clear()  # a later stall is news again
    elif exiting:
        # said once here; what the stuck writes report as they fail is noise at exit
        logging.getLogger("mlflow").setLevel(logging.CRITICAL)
    # a store whose runs already said they stopped recording (one warning each) is not news
    if not done and not _exit_warned and not (opened and opened <= _degraded_stores):
        _exit_warned.append(True)
        emit_warning(
            f"MLflow: {stores} did not take this process's last writes within {bound:g} s; "
            "the flow runs' MLflow runs may miss spans or metrics and show RUNNING until the "
            f"next run marks them FAILED (set {EXIT_WAIT_ENV} to wait longer)"
        )
    return done


_exit_warned: list[bool] = []
_degraded_stores: set[str] = set()  # stores a run stopped recording into (and warned about)


def warm_up_tracking() -> None:
    """Import MLflow and open the configured store now, in the background (never waits).

    `latent run` calls this once the configuration is checked, so that MLflow's start-up
    (seconds) overlaps Prefect's instead of following the first flow. A problem here is left
    for the first flow run to report.
    """
    if not tracking_enabled():
        return
    settings = current_settings()

    writer = _writer.use_writer(_mlflow.user_imported())

    def open_store() -> None:
        with suppress(Exception):
            connect(settings.tracking_uri, settings.connect_timeout_s, writer=writer)

    _background.submit(open_store)


def _stores() -> set[str]:
    """The stores this process has opened, here or in a writer process."""
    return {*_mlflow.Backend.cached_uris(), *_writer.ProcessBackend.cached_uris()}


def _exit_wait_s() -> float:
    uris = [*_stores(), current_settings().tracking_uri or ""]
    uris.append(os.environ.get(_mlflow.ENV_TRACKING_URI, ""))
    remote = any(uri.startswith(("http://", "https://")) for uri in uris)
    default = EXIT_WAIT_SERVER_S if remote else EXIT_WAIT_LOCAL_S
    try:
        return max(0.0, float(os.environ.get(EXIT_WAIT_ENV, "") or default))
    except ValueError:
        return default


def _at_exit() -> None:
    wait_for_tracking(exiting=True)


def _exit_wait_last() -> None:
    """(Re-)register the at-exit wait so that it runs before MLflow's own at-exit flush."""
    atexit.unregister(_at_exit)
    atexit.register(_at_exit)


def connect(tracking_uri: str | None, timeout_s: float, *, writer: bool = False) -> Backend:
    """The process's backend for `tracking_uri`; MLflow's fluent API then follows flow runs.

    `writer`: MLflow's writes go to a writer process (`_writer`), when the store is named.
    """
    if writer and tracking_uri:
        try:
            process = _writer.ProcessBackend.for_uri(tracking_uri, timeout_s, _exit_wait_s())
            return process  # type: ignore[return-value]  # Backend's methods (see `_writer`)
        except (OSError, _writer.WriterGone) as exc:  # no writer here (an odd interpreter)
            emit_warning(
                f"MLflow's writer process could not start ({exc}); MLflow's writes are done in "
                f"this process instead (set {_writer.WRITER_ENV}=thread to skip the attempt)"
            )
    backend = Backend.for_uri(tracking_uri, timeout_s)
    _mlflow_compat.install_flow_run_stack(_flow_active_run)
    return backend


def _flow_active_run() -> Any:
    """The current flow's run for MLflow's fluent API (see `_mlflow_compat.FlowRunStack`)."""
    if _background.in_background():
        return None
    run, _, _ = resolve()
    if run is None or not run.recording:
        return None
    return run.flow_active_run()


# -- context resolution ------------------------------------------------------------------------


def resolve() -> tuple[FlowRunHandle | None, SpanNode | None, bool]:
    """(run, parent span, fallback) for the current context; see the module docstring."""
    node = _SPAN.get()
    if node is not None and not node.run._ended:
        return node.run, node, node.fallback
    run = _RUN.get()
    if run is not None and not run._ended:
        return run, run._root, False
    with _active_lock:
        tops = {id(active._top) for active in _active_runs}
        if len(tops) != 1:
            return None, None, False
        run = _active_runs[-1]
    return run, run.deepest_open_span(), True


def current_run() -> FlowRunHandle | None:
    """The flow run this code records into (None outside one, or when it is not recorded)."""
    run, _, _ = resolve()
    return run if run is not None and run.recording else None


def current_span_node() -> SpanNode | None:
    return _SPAN.get()


@contextmanager
def enter_span(node: SpanNode) -> Iterator[None]:
    token = _SPAN.set(node)
    node.run.add_open_span(node)
    try:
        yield
    finally:
        node.run.remove_open_span(node)
        _SPAN.reset(token)


# -- public entry points -----------------------------------------------------------------------


@contextmanager
def flow_run(
    flow_name: str,
    params: Mapping[str, Any] | None = None,
    *,
    tags: Mapping[str, str] | None = None,
    code: Callable[..., Any] | None = None,
    top_level: bool = False,
) -> Iterator[FlowRunHandle]:
    """Record the enclosed flow body as an MLflow run with a root span named after the flow.

    Experiment = prefix + `flow_name` (subflows: a nested run in the parent's experiment); run
    name ``<flow>-<YYYYmmdd-HHMMSS>``; params flattened with dots, truncated and redacted; tags
    for environment, git sha, user and Latent version (`tags` adds to them; a
    ``mlflow.source.name`` path also locates the git commit). The run opens in the background
    (the body does not wait for MLflow); metrics are flushed and the run ended (FINISHED /
    FAILED) on exit. Any MLflow problem gives one warning and the body still runs.
    `code`, the flow's function: when it uses MLflow itself, the body waits for the run to
    open so that its own MLflow spans nest under the flow's. `top_level`: the caller knows this
    run has no parent (without it, a run started in a thread without context nests under the
    one flow run active in the process, as a worker thread's spans do).
    """
    parent, parent_span, _ = (None, None, False) if top_level else resolve()
    handle = FlowRunHandle(flow_name, parent)
    root = SpanNode(
        handle,
        name=flow_name,
        span_type="CHAIN",
        parent=parent_span,
        inputs=summarize(dict(params or {})),
        attributes={"latent.flow": flow_name},
        root_of=handle,
    )
    handle._root = root
    handle.nest_user_spans = (
        _mlflow.user_imported()
        or (code is not None and _mentions_mlflow(code))
        or (parent is not None and parent.nest_user_spans)
    )
    root.start()
    handle.open(params, tags, root)
    run_token = _RUN.set(handle)
    with _active_lock:
        _active_runs.append(handle)
    error: BaseException | None = None
    try:
        with enter_span(root), _current_span(root):
            try:
                yield handle
            except BaseException as exc:
                error = exc
                raise
    finally:
        with _active_lock:
            _active_runs.remove(handle)
        _RUN.reset(run_token)
        handle._root = None
        root.end(handle._outputs, error)
        handle.release_traces()
        handle.close(failed=error is not None)


def _mentions_mlflow(code: Callable[..., Any]) -> bool:
    """Whether `code`'s module refers to MLflow (``import mlflow``, ``from mlflow import x``)."""
    for value in getattr(code, "__globals__", {}).values():
        name = getattr(value, "__name__", None) if isinstance(value, type(sys)) else None
        name = name or getattr(value, "__module__", None)
        if isinstance(name, str) and (name == "mlflow" or name.startswith("mlflow.")):
            return True
    return False


@contextmanager
def _current_span(node: SpanNode) -> Iterator[None]:
    """MLflow's current span while `node` is open, when it is live (user spans nest under it).

    A pending span cannot be MLflow's current span. When user code imported MLflow itself (so
    it may open spans of its own, or autolog), this waits for the run instead: that code paid
    the import already, and its spans then nest where they belong.
    """
    run = node.run
    if node.pending and run.nest_user_spans:
        run.wait_ready()
    backend = run._backend if run.ready else None
    if backend is None or node.live is None:
        yield
        return
    with backend.current_span(node.live):
        yield


def record_task(
    task_name: str,
    *,
    duration_s: float,
    success: bool,
    cached: bool = False,
    rows_in: int | None = None,
    rows_out: int | None = None,
) -> None:
    """Buffer one task call's metrics on the active flow run; a no-op outside a recorded run.

    Logs task.<name>.duration / status (1 success, 0 failure) / rows_in / rows_out, and counts
    cache hits and misses (task.<name>.cache_hits/cache_misses, cache.hits/cache.misses). Sent
    with `log_batch` every 1,000 records or 30 s, and at run end: never one call per task.
    """
    run, _, _ = resolve()
    if run is None or not run.recording:
        return
    run.record(
        task_name,
        duration_s=duration_s,
        success=success,
        cached=cached,
        rows_in=rows_in,
        rows_out=rows_out,
    )


def record_cache_hits(task_name: str, count: int) -> None:
    """Count `count` cache hits of one task on the active flow run; a no-op outside one.

    What `record_task(..., cached=True)` counts, for many calls at once: a map's 10,000 cached
    rows cost one call, and log no duration or status points (a hit has no latency to chart).
    """
    run, _, _ = resolve()
    if run is None or not run.recording or count <= 0:
        return
    run.record_hits(task_name, count)


def numeric_metrics(value: Any, prefix: str = "") -> dict[str, float]:
    """Run metrics from a flow's numeric summary: a dict of numbers (nested dicts give dotted
    keys) or a one-row DataFrame. Booleans, NaN and non-numbers are left out."""
    out: dict[str, float] = {}
    if _is_frame(value) and len(value) == 1:
        value = value.iloc[0].to_dict()
    if not isinstance(value, Mapping):
        return out
    for key, item in value.items():
        name = f"{prefix}{key}"
        if isinstance(item, numbers.Real) and not isinstance(item, bool):
            number = float(item)
            if math.isfinite(number):
                out[name] = number
        elif isinstance(item, Mapping) or (_is_frame(item) and len(item) == 1):
            out.update(numeric_metrics(item, f"{name}."))
    return out


def _is_frame(value: Any) -> bool:
    cls = type(value)
    return cls.__module__.startswith("pandas") and cls.__name__ == "DataFrame"


# -- params and tags ---------------------------------------------------------------------------


def flatten_params(params: Mapping[str, Any]) -> dict[str, str]:
    """MLflow params from nested parameters: keys joined with dots, secrets redacted, truncated."""
    out: dict[str, str] = {}
    for key, value in redact(params).items():
        _flatten_into(out, f"{key}.", value)
    return out


def _flatten_into(out: dict[str, str], prefix: str, value: Any) -> None:
    if hasattr(value, "model_dump") and callable(value.model_dump):
        value = redact(value.model_dump())
    if isinstance(value, Mapping) and value:
        for key, item in value.items():
            _flatten_into(out, f"{prefix}{key}.", item)
        return
    key = prefix[:-1][: _mlflow.MAX_PARAM_KEY_LEN]
    out[key] = _param_text(value)[: _mlflow.MAX_PARAM_VALUE_LEN]


def _param_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, default=str)
    except (TypeError, ValueError):
        return str(value)


def standard_tags(
    flow_name: str, environment: str | None, given: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Latent's tags and MLflow's standard ones ("Created by", "Source", git commit)."""
    tags = {
        "latent.flow": flow_name,
        "latent.process": f"{socket.gethostname()}:{os.getpid()}",
        "latent.version": _latent_version(),
        "mlflow.source.type": "LOCAL",
    }
    if environment:
        tags["latent.environment"] = environment
    user = _user()
    if user:
        tags["mlflow.user"] = user
    source = (given or {}).get("mlflow.source.name")
    sha = _git_sha(str(Path(source).parent) if source else os.getcwd())
    if sha:
        tags["mlflow.source.git.commit"] = sha
    return tags


@functools.cache
def _user() -> str | None:
    try:
        return getpass.getuser()
    except Exception:  # no login name (some containers)
        return None


@functools.cache
def _latent_version() -> str:
    """latent-prefect's version when installed (the user-facing one), else latent-observe's."""
    for distribution in ("latent-prefect", "latent-observe"):
        try:
            return importlib.metadata.version(distribution)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "unknown"


@functools.cache
def _git_sha(cwd: str) -> str | None:
    """HEAD's commit when `cwd` is in a git work tree with a commit; None otherwise."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    sha = result.stdout.strip()
    return sha if result.returncode == 0 and re.fullmatch(r"[0-9a-f]{40,64}", sha) else None
