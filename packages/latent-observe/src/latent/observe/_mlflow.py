"""The one place that talks to MLflow; everything else degrades through `TrackingUnavailable`.

MLflow is imported lazily (it takes seconds). Runs, params and metrics go through an explicit
`MlflowClient` bound to a tracking URI, never through MLflow's fluent "active run", which is
thread-local (MLflow #15131): worker threads then log to the right run. Spans use
`start_span_no_context` with an explicit parent for the same reason, and are also set as
MLflow's current span so user code calling `mlflow.start_span` (or an autolog) nests under them.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import unquote, urlparse

from latent.observe import _mlflow_compat
from latent.observe._redact import redacted_exception
from latent.observe._settings import stable_tracking_env

# MLflow's own limits (mlflow.utils.validation); log_batch rejects more per call.
MAX_PARAM_VALUE_LEN = 6000
MAX_PARAM_KEY_LEN = 250
MAX_TAG_VALUE_LEN = 8000
MAX_PARAMS_PER_BATCH = 100
MAX_METRICS_PER_BATCH = 1000
SOURCE_RUN_METADATA = "mlflow.sourceRun"
ENV_TRACKING_URI = "MLFLOW_TRACKING_URI"


class TrackingUnavailable(Exception):
    """MLflow cannot record this run; the message says why and how to fix it."""


#: MLflow's public knobs for its background span export, and Latent's defaults for them. MLflow
#: sends finished spans to the store 5 at a time; a map's rows end by the thousand, and each
#: store call has a fixed cost (one SQL transaction, or one HTTP request), so bigger batches
#: halve the CPU a row span costs. MLflow's span queue holds max(batch size, 2,048) spans and
#: drops the rest when full: at 16,384 a 10,000-row map keeps every row's span. The interval
#: bounds how long a finished span waits before it is sent. A user's own values win.
SPAN_EXPORT_DEFAULTS = {
    "MLFLOW_ASYNC_TRACE_LOGGING_MAX_SPAN_BATCH_SIZE": "16384",
    "MLFLOW_ASYNC_TRACE_LOGGING_MAX_INTERVAL_MILLIS": "1000",
}


#: True once Latent itself imported MLflow (before any user code did): see `user_imported`.
_imported_by_latent = [False]


def user_imported() -> bool:
    """Whether code other than Latent's imported MLflow (it may open spans of its own)."""
    return "mlflow" in sys.modules and not _imported_by_latent[0]


def import_mlflow() -> Any:
    for name, value in SPAN_EXPORT_DEFAULTS.items():
        os.environ.setdefault(name, value)  # read when MLflow builds its tracer, after this
    if "mlflow" not in sys.modules:
        _imported_by_latent[0] = True
    try:
        import mlflow
    except ImportError as exc:
        raise TrackingUnavailable(
            f"MLflow is not installed ({exc}); install latent-observe with its dependencies "
            "(`pip install latent-observe`) or disable tracking with LATENT_MLFLOW_ENABLED=0"
        ) from exc
    return mlflow


def check_reachable(tracking_uri: str, timeout_s: float) -> None:
    """Fail fast (within `timeout_s`) when an HTTP tracking server does not answer.

    MLflow's own client retries for minutes; a flow must not wait that long to learn that the
    server is down. Local stores (sqlite, file) need no check.
    """
    if not tracking_uri.startswith(("http://", "https://")):
        return
    url = tracking_uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            if response.status == 200:
                return
            problem = f"HTTP {response.status}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        problem = str(getattr(exc, "reason", exc))
    raise TrackingUnavailable(
        f"MLflow tracking server {tracking_uri} did not answer within {timeout_s:g}s ({problem}); "
        "start it (`mlflow server`), fix [mlflow] tracking_uri, or set LATENT_MLFLOW_ENABLED=0"
    )


# MLflow's HTTP client retries a failed request 7 times with exponential backoff and waits 120 s
# per request: a tracking server that dies mid-run would stall the flow for minutes. These
# defaults bound it to seconds; a user's own settings of these variables win.
HTTP_BOUNDS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
}


def bound_http_retries(tracking_uri: str) -> None:
    """Bound MLflow's HTTP retries for a tracking server (see HTTP_BOUNDS)."""
    if tracking_uri.startswith(("http://", "https://")):
        for name, value in HTTP_BOUNDS.items():
            os.environ.setdefault(name, value)


#: How long a process waits for another one that is creating the same SQLite store.
STORE_SETUP_WAIT_S = 600.0
#: How long a write to a SQLite store waits for another process's write (SQLite's default: 5 s;
#: four runs writing spans at once on two cores need more).
SQLITE_BUSY_TIMEOUT_MS = 60_000
_sqlite_stores: set[str] = set()  # files whose connections get the busy timeout
_sqlite_lock = threading.Lock()


def sqlite_path(tracking_uri: str) -> Path | None:
    """The file of a ``sqlite:///`` store (None for other stores and in-memory SQLite)."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    path = unquote(urlparse(tracking_uri).path)
    return Path(path) if path and path != "/:memory:" else None


def ensure_sqlite_dir(tracking_uri: str) -> None:
    """Create the directory of a ``sqlite:///`` store: `.latent/` may not exist yet."""
    path = sqlite_path(tracking_uri)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)


@contextlib.contextmanager
def store_setup(tracking_uri: str) -> Iterator[None]:
    """Around the first opening of a store in this process: safe when processes race.

    MLflow creates (or migrates) a SQLite store's tables when it opens it; two processes doing
    that at once on a fresh project fail ("table _alembic_tmp_... already exists"). The first
    opening holds a file lock beside the database (``mlflow.db.lock``), switches the file to
    WAL (readers never block the writer) and gives every connection a busy timeout of
    `SQLITE_BUSY_TIMEOUT_MS`, so concurrent runs wait for each other instead of failing with
    "database is locked". Other stores need none of this.
    """
    path = sqlite_path(tracking_uri)
    if path is None:
        yield
        return
    from filelock import FileLock

    path.parent.mkdir(parents=True, exist_ok=True)
    _busy_timeout_for(path)
    with FileLock(f"{path}.lock", timeout=STORE_SETUP_WAIT_S):
        with contextlib.closing(sqlite3.connect(path, timeout=SQLITE_BUSY_TIMEOUT_MS / 1000)) as db:
            db.execute("PRAGMA journal_mode=WAL")
        yield


def _busy_timeout_for(path: Path) -> None:
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    with _sqlite_lock:
        first = not _sqlite_stores
        _sqlite_stores.add(str(path.resolve()))
    if first:
        event.listen(Engine, "connect", _on_connect)


def _on_connect(connection: Any, _record: Any) -> None:
    """A new SQLite connection to one of Latent's stores waits for other writers."""
    if not isinstance(connection, sqlite3.Connection):
        return
    try:
        files = {row[2] for row in connection.execute("PRAGMA database_list")}
        if files & _sqlite_stores:
            connection.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
    except sqlite3.Error:
        pass  # the store itself reports real problems


class Backend:
    """MLflow for one tracking URI: experiments, runs, batches, spans. Process-wide, cached."""

    _cache: ClassVar[dict[str, Backend]] = {}
    _cache_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, tracking_uri: str) -> None:
        bound_http_retries(tracking_uri)
        self.mlflow = import_mlflow()
        self.tracking_uri = tracking_uri
        with store_setup(tracking_uri):
            self.client = self.mlflow.MlflowClient(tracking_uri=tracking_uri)
        self._experiments: dict[str, str] = {}
        self._lock = threading.Lock()

    @classmethod
    def for_uri(cls, tracking_uri: str | None, timeout_s: float) -> Backend:
        """The backend for `tracking_uri` (MLflow's default when None), after a bounded check."""
        uri = tracking_uri or import_mlflow().get_tracking_uri()
        check_reachable(uri, timeout_s)
        with cls._cache_lock:
            backend = cls._cache.get(uri)
            if backend is None:
                backend = cls._cache[uri] = cls(uri)
        return backend

    def use_for_traces(self) -> None:
        """Point MLflow's trace exporter (which only reads the global URI) at this store.

        `mlflow.set_tracking_uri` also exports ``MLFLOW_TRACKING_URI``, which users (and
        Latent's project settings) read as *their* choice: the next project opened in this
        process would record into this one's store. The variable is put back as it was.
        """
        if self.mlflow.get_tracking_uri() == self.tracking_uri:
            return
        with stable_tracking_env():  # another thread reading a project's URI waits for this
            before = os.environ.get(ENV_TRACKING_URI)
            try:
                self.mlflow.set_tracking_uri(self.tracking_uri)
            finally:
                if before is None:
                    os.environ.pop(ENV_TRACKING_URI, None)
                else:
                    os.environ[ENV_TRACKING_URI] = before

    def experiment_id(self, name: str, artifact_root: str | None = None) -> str:
        """The experiment `name`, created on first use with artifacts under `artifact_root`."""
        with self._lock:
            if name in self._experiments:
                return self._experiments[name]
            experiment = self.client.get_experiment_by_name(name)
            if experiment is not None and experiment.lifecycle_stage == "deleted":
                self.client.restore_experiment(experiment.experiment_id)
            if experiment is None:
                location = experiment_artifact_location(artifact_root, name)
                try:
                    experiment_id = self.client.create_experiment(name, artifact_location=location)
                except Exception:  # another process created it first
                    found = self.client.get_experiment_by_name(name)
                    if found is None:
                        raise
                    experiment_id = found.experiment_id
            else:
                experiment_id = experiment.experiment_id
            self._experiments[name] = experiment_id
            return experiment_id

    def start_run(
        self, experiment_id: str, run_name: str, tags: Mapping[str, str], parent_run_id: str | None
    ) -> str:
        all_tags = {key: value[:MAX_TAG_VALUE_LEN] for key, value in tags.items()}
        if parent_run_id:
            all_tags["mlflow.parentRunId"] = parent_run_id
        run = self.client.create_run(experiment_id, run_name=run_name, tags=all_tags)
        return str(run.info.run_id)

    def log_params(self, run_id: str, params: Mapping[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(key, value) for key, value in params.items()]
        for start in range(0, len(items), MAX_PARAMS_PER_BATCH):
            self.client.log_batch(run_id, params=items[start : start + MAX_PARAMS_PER_BATCH])

    def log_metrics(self, run_id: str, metrics: Sequence[tuple[str, float, int, int]]) -> None:
        """Log (key, value, timestamp_ms, step) tuples in as few calls as MLflow allows."""
        from mlflow.entities import Metric

        items = [Metric(key, value, timestamp, step) for key, value, timestamp, step in metrics]
        for start in range(0, len(items), MAX_METRICS_PER_BATCH):
            self.client.log_batch(run_id, metrics=items[start : start + MAX_METRICS_PER_BATCH])

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(key, value[:MAX_TAG_VALUE_LEN]) for key, value in tags.items()]
        if items:
            self.client.log_batch(run_id, tags=items)

    def log_dict(self, run_id: str, data: Mapping[str, Any], artifact_file: str) -> None:
        """`data` as a JSON artifact (values JSON cannot hold are written as text)."""
        self.client.log_text(run_id, json.dumps(data, indent=1, default=str), artifact_file)

    def log_table(self, run_id: str, data: Any, artifact_file: str) -> None:
        self.client.log_table(run_id, data=data, artifact_file=artifact_file)

    def log_artifact(self, run_id: str, path: str, artifact_path: str | None) -> None:
        self.client.log_artifact(run_id, path, artifact_path)

    def log_dataset(
        self,
        run_id: str,
        *,
        name: str,
        digest: str,
        source: str,
        source_type: str,
        context: str,
        schema: str | None,
        profile: str | None,
    ) -> None:
        """Record a dataset the run read or wrote (MLflow's run inputs, tagged with `context`)."""
        from mlflow.entities import Dataset, DatasetInput, InputTag
        from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

        dataset = Dataset(
            name=name,
            digest=digest,
            source_type=source_type,
            source=source,
            schema=schema,
            profile=profile,
        )
        tags = [InputTag(MLFLOW_DATASET_CONTEXT, context)]
        self.client.log_inputs(run_id, datasets=[DatasetInput(dataset, tags)])

    def end_run(self, run_id: str, *, failed: bool) -> None:
        self.client.set_terminated(run_id, "FAILED" if failed else "FINISHED")

    def start_span(
        self,
        name: str,
        span_type: str,
        *,
        parent: Any,
        inputs: Any,
        attributes: Mapping[str, Any],
        experiment_id: str | None = None,
        run_id: str | None = None,
        start_time_ns: int | None = None,
    ) -> Any:
        """Start a span under `parent` (a new trace linked to `run_id` when parent is None)."""
        metadata = {SOURCE_RUN_METADATA: run_id} if parent is None and run_id else None
        return self.mlflow.start_span_no_context(
            name,
            span_type=span_type,
            parent_span=parent,
            inputs=inputs,
            attributes=dict(attributes),
            metadata=metadata,
            experiment_id=experiment_id if parent is None else None,
            start_time_ns=start_time_ns,
        )

    @contextlib.contextmanager
    def current_span(self, span: Any) -> Iterator[None]:
        """Make `span` MLflow's current span here, so `mlflow.start_span` calls nest under it."""
        with _mlflow_compat.span_in_context(span):
            yield

    @staticmethod
    def end_span(
        span: Any, *, outputs: Any, error: BaseException | None, end_ns: int | None = None
    ) -> None:
        if error is not None and isinstance(error, Exception):
            span.record_exception(redacted_exception(error))
        span.end(outputs=outputs, end_time_ns=end_ns)

    def flush_traces(self, timeout_s: float = 120.0) -> bool:
        """Wait (bounded) for MLflow's background trace writer, so a run's trace can be read."""
        return _mlflow_compat.wait_trace_export(timeout_s)

    @classmethod
    def cached_uris(cls) -> list[str]:
        """The stores opened so far (never waits: a backend may be opening under the lock)."""
        return list(cls._cache.copy())


def experiment_artifact_location(artifact_root: str | None, experiment: str) -> str | None:
    """Where a new experiment keeps its artifacts: ``<root>/<experiment name>``; None = MLflow's."""
    if not artifact_root:
        return None
    safe = re.sub(r"[^\w.-]", "_", experiment) or "experiment"
    if "://" in artifact_root:
        return f"{artifact_root.rstrip('/')}/{safe}"
    return str(Path(artifact_root).expanduser().resolve() / safe)


def default_artifact_root(tracking_uri: str) -> str | None:
    """Beside a local SQLite store (`.latent/artifacts`); a server's own default otherwise."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    path = unquote(urlparse(tracking_uri).path)
    if not path or path == "/:memory:":
        return None
    return str(Path(path).parent / "artifacts")


def now_ms() -> int:
    return int(time.time() * 1000)
