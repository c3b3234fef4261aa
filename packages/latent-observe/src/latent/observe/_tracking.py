"""Flow runs as MLflow runs, with batched task metrics and a root span per flow.

State lives in context variables, so concurrent flows do not see each other and Prefect's worker
threads (which copy the context) see their flow. A plain ``ThreadPoolExecutor`` does not copy
it: a thread with no context of its own falls back to the process's single active flow run.
Every MLflow problem becomes one warning per top-level flow run; the flow body always runs.
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import os
import re
import subprocess
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from datetime import datetime
from typing import Any

from latent.observe import _mlflow
from latent.observe._mlflow import Backend, TrackingUnavailable
from latent.observe._settings import current_settings, emit_warning, tracking_enabled
from latent.observe._summary import redact, summarize

#: Metrics are sent with one `log_batch` per this many records, or per this many seconds.
FLUSH_EVERY_RECORDS = 1000
FLUSH_EVERY_SECONDS = 30.0

_METRIC_UNSAFE = re.compile(r"[^\w\-. /:]")


class SpanNode:
    """A live MLflow span and the run it belongs to; `fallback` when reached without context."""

    __slots__ = ("fallback", "live", "run")

    def __init__(self, live: Any, run: FlowRunHandle, fallback: bool) -> None:
        self.live = live
        self.run = run
        self.fallback = fallback


_RUN: ContextVar[FlowRunHandle | None] = ContextVar("latent_observe_run", default=None)
_SPAN: ContextVar[SpanNode | None] = ContextVar("latent_observe_span", default=None)
_active_runs: list[FlowRunHandle] = []
_active_lock = threading.Lock()


class FlowRunHandle:
    """What `flow_run` yields: the MLflow run's ids, and whether it is being recorded."""

    def __init__(self, flow_name: str, parent: FlowRunHandle | None) -> None:
        self.flow_name = flow_name
        self.parent = parent
        self.run_id: str | None = None
        self.experiment_id: str | None = None
        self._top: FlowRunHandle = parent._top if parent is not None else self
        self._backend: Backend | None = None
        self._warned = False  # meaningful on the top-level run only
        self._ended = False
        self._lock = threading.Lock()
        self._metrics: list[tuple[str, float, int, int]] = []
        self._steps: dict[str, int] = {}
        self._cache_counts: dict[str, list[int]] = {}  # task -> [hits, misses]
        self._last_flush = time.monotonic()
        self._root: SpanNode | None = None
        self._open_spans: list[SpanNode] = []

    @property
    def active(self) -> bool:
        """True while MLflow records this run (False when disabled, unavailable or failed)."""
        return self._backend is not None and not self._ended

    @property
    def backend(self) -> Backend | None:
        return self._backend

    def __repr__(self) -> str:
        return (
            f"FlowRunHandle(flow={self.flow_name!r}, run_id={self.run_id!r}, active={self.active})"
        )

    # -- degrading ---------------------------------------------------------------------------

    def degrade(self, message: str) -> None:
        """Stop recording this run (and its subflows); warn once per top-level run."""
        self._backend = None
        top = self._top
        with top._lock:
            if top._warned:
                return
            top._warned = True
        emit_warning(f"flow '{top.flow_name}': {message}; the flow runs without MLflow tracking")

    # -- opening -----------------------------------------------------------------------------

    def open(self, params: Mapping[str, Any] | None, tags: Mapping[str, str] | None) -> None:
        backend = self._connect()
        if backend is None:
            return
        try:
            self._start_run(backend, params or {}, tags or {})
        except Exception as exc:
            self.degrade(f"MLflow could not start a run at {backend.tracking_uri} ({exc})")

    def _connect(self) -> Backend | None:
        if self.parent is not None:
            return self.parent._backend
        if not tracking_enabled():
            self.degrade(
                "MLflow tracking is disabled ([mlflow] enabled = false or LATENT_MLFLOW_ENABLED=0)"
            )
            return None
        settings = current_settings()
        try:
            return Backend.for_uri(settings.tracking_uri, settings.connect_timeout_s)
        except TrackingUnavailable as exc:
            self.degrade(str(exc))
        except Exception as exc:
            self.degrade(f"MLflow could not be set up for {settings.tracking_uri!r} ({exc})")
        return None

    def _start_run(
        self, backend: Backend, params: Mapping[str, Any], tags: Mapping[str, str]
    ) -> None:
        settings = current_settings()
        if self.parent is not None and self.parent.experiment_id is not None:
            experiment_id = self.parent.experiment_id  # nested runs live with their parent
        else:
            experiment_id = backend.experiment_id(settings.experiment_prefix + self.flow_name)
        run_name = f"{self.flow_name}-{datetime.now():%Y%m%d-%H%M%S}"
        parent_run_id = self.parent.run_id if self.parent is not None else None
        run_tags = {**_standard_tags(self.flow_name, settings.environment), **tags}
        self.run_id = backend.start_run(experiment_id, run_name, run_tags, parent_run_id)
        self.experiment_id = experiment_id
        self._backend = backend
        flat = flatten_params(params)
        if flat:
            backend.log_params(self.run_id, flat)

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
            due = (
                len(self._metrics) >= FLUSH_EVERY_RECORDS
                or time.monotonic() - self._last_flush >= FLUSH_EVERY_SECONDS
            )
        if due:
            self.flush()

    def _append(self, key: str, value: float, timestamp: int) -> None:
        step = self._steps.get(key, 0)
        self._steps[key] = step + 1
        self._metrics.append((key, value, timestamp, step))

    def flush(self) -> None:
        """Send buffered metrics and the cache counters so far in `log_batch` calls."""
        backend, run_id = self._backend, self.run_id
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
        backend, run_id = self._backend, self.run_id
        if backend is not None and run_id is not None:
            self.flush()
            try:
                backend.end_run(run_id, failed=failed)
                if self.parent is None:
                    backend.flush_traces()
            except Exception as exc:
                self.degrade(f"MLflow could not end run {run_id} ({exc})")
        self._ended = True


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
) -> Iterator[FlowRunHandle]:
    """Record the enclosed flow body as an MLflow run with a root span named after the flow.

    Experiment = prefix + `flow_name` (subflows: a nested run in the parent's experiment); run
    name ``<flow>-<YYYYmmdd-HHMMSS>``; params flattened with dots, truncated and redacted; tags
    for environment, git sha and Latent version. Metrics are flushed and the run ended
    (FINISHED / FAILED) on exit. Any MLflow problem gives one warning and the body still runs.
    """
    parent, parent_span, _ = resolve()
    handle = FlowRunHandle(flow_name, parent)
    handle.open(params, tags)
    run_token = _RUN.set(handle)
    with _active_lock:
        _active_runs.append(handle)
    error: BaseException | None = None
    try:
        with _root_span(handle, parent_span, params):
            try:
                yield handle
            except BaseException as exc:
                error = exc
                raise
    finally:
        with _active_lock:
            _active_runs.remove(handle)
        _RUN.reset(run_token)
        handle.close(failed=error is not None)


@contextmanager
def _root_span(
    handle: FlowRunHandle, parent_span: SpanNode | None, params: Mapping[str, Any] | None
) -> Iterator[None]:
    backend = handle.backend
    if backend is None:
        yield
        return
    # A parent span without a live object is another process's (see `_remote`): the span
    # continues that trace, which already belongs to an experiment and a run.
    remote_parent = parent_span is not None and parent_span.live is None
    try:
        live = backend.start_span(
            handle.flow_name,
            "CHAIN",
            parent=parent_span.live if parent_span is not None else None,
            inputs=summarize(dict(params or {})),
            attributes={"latent.flow": handle.flow_name, "latent.run_id": handle.run_id},
            experiment_id=None if remote_parent else handle.experiment_id,
            run_id=None if remote_parent else handle.run_id,
        )
    except Exception as exc:
        handle.degrade(f"MLflow could not start the flow's trace ({exc})")
        yield
        return
    node = SpanNode(live, handle, fallback=False)
    handle._root = node
    error: BaseException | None = None
    try:
        with enter_span(node), backend.current_span(live):
            yield
    except BaseException as exc:
        error = exc
        raise
    finally:
        handle._root = None
        _end_span(handle, live, None, error)


def _end_span(run: FlowRunHandle, live: Any, outputs: Any, error: BaseException | None) -> None:
    try:
        Backend.end_span(live, outputs=outputs, error=error)
    except Exception as exc:
        run.degrade(f"MLflow could not end a span ({exc})")


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
    if run is None or not run.active:
        return
    run.record(
        task_name,
        duration_s=duration_s,
        success=success,
        cached=cached,
        rows_in=rows_in,
        rows_out=rows_out,
    )


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


def _standard_tags(flow_name: str, environment: str | None) -> dict[str, str]:
    tags = {"latent.flow": flow_name, "latent.version": _latent_version()}
    if environment:
        tags["latent.environment"] = environment
    sha = _git_sha(os.getcwd())
    if sha:
        tags["mlflow.source.git.commit"] = sha
    return tags


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
