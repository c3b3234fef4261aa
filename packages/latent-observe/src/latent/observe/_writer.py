"""MLflow's writes in a process of their own: the writer, and `ProcessBackend`, its client.

MLflow's Python SDK is CPU-bound: importing it and opening a SQLite store take 1-2 s, and each
span or metric batch costs about a millisecond of Python. In the flow's process all of it holds
the GIL the flow needs: 10,000 async rows of 50 ms ran at 2.3x the time the rows themselves
take, and a fully cached run spent half its time on MLflow. A flow run that does not use MLflow
itself therefore hands its writes to a writer process (`serve`, in ``python -c``),
which does them on another core with a `Backend` of its own; the flow's process only queues small
messages.

`ProcessBackend` has `Backend`'s methods. Run-level calls (experiments, runs, params, metrics,
tables, the end) wait for the writer's answer, on the background thread that already makes
them (`_background`), so their errors reach the caller as before. Spans are messages only: a
`ProxySpan` stands for the writer's live span, and its ids are asked for when someone needs them
(a worker process continuing the trace, a link). A span the writer could not record gives one
warning; the flow goes on.

Which flow runs use it (`LATENT_MLFLOW_WRITER`): ``auto`` (the default) sends a top-level flow
run's writes to the writer unless its code uses MLflow itself (its module imports ``mlflow``, or
MLflow was imported before the flow started): MLflow's current span only exists in-process, and
such code wants its own `mlflow.start_span` calls to nest under the task's span. ``process``
always uses the writer, ``thread`` never (MLflow in this process, on the background thread).
Where the caller allowed it (`_shared.share_writers`; ``latent`` does, in its state directory),
the writer is forked by the shared writer, which imported MLflow once for every run (`_shared`);
``private`` always starts a writer process of its own.

The writer ignores Ctrl-C (the flow's process decides when to stop) and ends when its input
closes: it finishes the writes it was given, bounded by the exit wait it was started with, so
a killed flow process leaves no writer behind for longer than that.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import json
import os
import pickle
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future
from typing import IO, Any, ClassVar

from latent.observe import _mlflow_compat
from latent.observe._mlflow import Backend, TrackingUnavailable
from latent.observe._settings import emit_warning

WRITER_ENV = "LATENT_MLFLOW_WRITER"
WRITER_MODES = ("auto", "process", "private", "thread")
#: How long a call waits for the writer's answer (opening the store on a loaded machine: ~10 s).
CALL_WAIT_S = 600.0
#: How long span messages gather before they are sent: one pipe write and one wake-up of the
#: sending thread per burst, not per span (10,000 rows end within seconds). A call is sent at once.
LINGER_S = 0.02
#: Span messages waiting to be sent, at most (a few tens of MB). A flow that outruns its writer
#: then waits for it (back-pressure), for at most `QUEUE_WAIT_S` at a time: a writer stuck that
#: long (a store that stopped answering) has its later span messages dropped, with one warning,
#: until it catches up, so the flow never hangs on MLflow.
MAX_QUEUED = 100_000
QUEUE_WAIT_S = 30.0
_FRAME = struct.Struct(">I")
#: The writer's command line (``-m`` would import this module twice: as the package's and as
#: ``__main__``).
_WRITER_MAIN = "import sys; from latent.observe._writer import serve; serve(float(sys.argv[1]))"


class WriterError(Exception):
    """The writer process failed a call, or is gone; the message says which and why."""


class WriterGone(WriterError):
    """The writer process is not there to answer (it exited, or never answered)."""


def writer_mode() -> str:
    """``LATENT_MLFLOW_WRITER``: auto (unset or empty), process, private or thread.

    Anything else gives one warning and counts as auto: observability never stops a flow.
    """
    value = os.environ.get(WRITER_ENV, "").strip().lower() or "auto"
    if value not in WRITER_MODES:
        emit_warning(
            f"{WRITER_ENV}={os.environ[WRITER_ENV]!r} is not one of {', '.join(WRITER_MODES)}; "
            "using auto"
        )
        return "auto"
    return value


def use_writer(uses_mlflow: bool) -> bool:
    """Whether a top-level flow run (whose code uses MLflow itself, or not) uses the writer."""
    mode = writer_mode()
    return mode in ("process", "private") or (mode == "auto" and not uses_mlflow)


# -- framing (both sides) ----------------------------------------------------------------------


def _write_frame(stream: IO[bytes], payload: bytes) -> None:
    stream.write(_FRAME.pack(len(payload)) + payload)
    stream.flush()


def _read_frame(stream: IO[bytes]) -> bytes | None:
    """The next frame, or None at the end of the stream."""
    header = stream.read(_FRAME.size)
    if len(header) < _FRAME.size:
        return None
    (size,) = _FRAME.unpack(header)
    payload = stream.read(size)
    return payload if len(payload) == size else None


def _dumps(messages: list[tuple[Any, ...]]) -> tuple[bytes, list[tuple[Any, ...]]]:
    """Pickle a batch; a message that cannot be pickled is sent with its values as text, or
    (when even that fails) dropped and returned, so one odd span output loses nothing else."""
    try:
        return pickle.dumps(messages, protocol=pickle.HIGHEST_PROTOCOL), []
    except Exception:
        pass
    kept: list[tuple[Any, ...]] = []
    dropped: list[tuple[Any, ...]] = []
    for message in messages:
        for candidate in (message, tuple(_as_text(part) for part in message)):
            try:
                pickle.dumps(candidate, protocol=pickle.HIGHEST_PROTOCOL)
            except Exception:
                continue
            kept.append(candidate)
            break
        else:
            dropped.append(message)
    return pickle.dumps(kept, protocol=pickle.HIGHEST_PROTOCOL), dropped


def _as_text(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    try:
        pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        return value
    except Exception:
        return repr(value)[:1000]


# -- the flow's side -----------------------------------------------------------------------------


class ProxySpan:
    """The writer's live span, as `Backend.end_span` and the tracking code use MLflow's."""

    __slots__ = ("_asked", "_ids", "backend", "ref")

    def __init__(self, backend: ProcessBackend, ref: int) -> None:
        self.backend = backend
        self.ref = ref
        self._ids: tuple[str, str] | None = None
        self._asked: Future[Any] | None = None  # the ids, asked for ahead (a trace's root)

    def set_attribute(self, key: str, value: Any) -> None:
        self.backend._send(("attr", self.ref, key, value))

    def record_exception(self, error: BaseException) -> None:
        self.backend._send(("exc", self.ref, type(error).__name__, str(error)))

    def end(self, outputs: Any = None, end_time_ns: int | None = None) -> None:
        self.backend._send(("end", self.ref, outputs, end_time_ns))

    def ask_ids(self) -> None:
        """Ask for the ids now, answered in turn, and kept: a trace's root is asked when it
        starts, because at the flow's end (its links) the question would wait behind every
        span the flow sent meanwhile (0.7 s after 10,000 rows)."""
        if self._asked is None and self._ids is None:
            with contextlib.suppress(Exception):
                self._asked = self.backend._ask("ids", self.ref)

    def _fetch_ids(self) -> tuple[str, str]:
        """Asked for once; ("", "") when the writer no longer knows the span (it ended)."""
        if self._ids is None:
            try:
                if self._asked is not None:
                    self._ids = self.backend._answer("ids", self._asked, CALL_WAIT_S)
                else:
                    self._ids = self.backend._call("ids", self.ref)
            except Exception:
                return "", ""
        return self._ids

    @property
    def trace_id(self) -> str:
        return self._fetch_ids()[0]

    @property
    def span_id(self) -> str:
        return self._fetch_ids()[1]


class ProcessBackend:
    """`Backend`'s methods, done by a writer process (see the module docstring). One per store."""

    own_process = True
    _cache: ClassVar[dict[str, ProcessBackend]] = {}
    # re-entrant: a writer whose store cannot be opened closes itself inside `for_uri`
    _cache_lock: ClassVar[threading.RLock] = threading.RLock()
    _cache_pid: ClassVar[int] = os.getpid()

    def __init__(self, tracking_uri: str, timeout_s: float, exit_wait_s: float) -> None:
        self.tracking_uri = tracking_uri
        self._refs = itertools.count(1)
        self._lock = threading.Condition()
        self._outbox: list[tuple[Any, ...]] = []
        self._urgent = False  # a call (or the close) waits in the outbox: no lingering
        self._waiting: dict[int, Future[Any]] = {}
        self._gone: str | None = None
        self._warned = False
        self._dropping = False  # the writer was stuck with a full queue: drop, do not wait
        self._client_backend: Backend | None = None
        self._ended = threading.Event()  # the writer closed its output: it is done
        self._process: subprocess.Popen[bytes] | None = None
        from latent.observe import _shared

        self._shared = _shared.connect(exit_wait_s) if writer_mode() != "private" else None
        if self._shared is not None:  # forked by the shared writer: MLflow already imported
            self._in, self._out = self._shared.reader, self._shared.writer
        else:
            self._process = subprocess.Popen(
                [sys.executable, "-c", _WRITER_MAIN, f"{exit_wait_s:g}"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                start_new_session=True,  # a Ctrl-C at the terminal is for the flow's process
            )
            assert self._process.stdin is not None and self._process.stdout is not None
            self._in, self._out = self._process.stdout, self._process.stdin
        threading.Thread(target=self._send_loop, name="latent-writer-send", daemon=True).start()
        threading.Thread(target=self._read_loop, name="latent-writer-read", daemon=True).start()
        try:
            self._call("open", tracking_uri, timeout_s)
        except BaseException:
            self.close(5.0)
            raise

    @property
    def pid(self) -> int | None:
        """The writer's process (a private one, or the one the shared writer forked)."""
        if self._process is not None:
            return self._process.pid
        return self._shared.pid if self._shared is not None else None

    @property
    def shared(self) -> bool:
        return self._shared is not None

    @classmethod
    def for_uri(cls, tracking_uri: str, timeout_s: float, exit_wait_s: float) -> ProcessBackend:
        """This process's writer for `tracking_uri`, started (and its store opened) once."""
        with cls._cache_lock:
            if cls._cache_pid != os.getpid():  # a forked child: the writers are the parent's
                cls._cache, cls._cache_pid = {}, os.getpid()
            backend = cls._cache.get(tracking_uri)
            if backend is not None and backend._gone is None:
                return backend
            backend = cls(tracking_uri, timeout_s, exit_wait_s)
            cls._cache[tracking_uri] = backend
            return backend

    @classmethod
    def cached_uris(cls) -> list[str]:
        return list(cls._cache.copy()) if cls._cache_pid == os.getpid() else []

    @classmethod
    def all(cls) -> list[ProcessBackend]:
        return list(cls._cache.copy().values()) if cls._cache_pid == os.getpid() else []

    # -- the channel ---------------------------------------------------------------------------

    def _send(self, message: tuple[Any, ...]) -> None:
        with self._lock:
            if self._gone is not None:
                return
            if len(self._outbox) >= MAX_QUEUED and not self._room():
                return
            self._outbox.append(message)
            if len(self._outbox) == 1:
                self._lock.notify()

    def _room(self) -> bool:
        """With the lock held and the queue full: wait for the writer (see `MAX_QUEUED`)."""
        self._lock.notify()
        room = self._lock.wait_for(
            lambda: len(self._outbox) < MAX_QUEUED or self._gone is not None,
            timeout=0.0 if self._dropping else QUEUE_WAIT_S,
        )
        if room:
            self._dropping = False
            return self._gone is None
        if not self._dropping:
            self._dropping = True
            self._span_problem(
                f"its writer process took no spans for {QUEUE_WAIT_S:g} s with "
                f"{MAX_QUEUED:,} waiting; later spans are dropped until it catches up"
            )
        return False

    def _call(self, op: str, *args: Any, timeout_s: float = CALL_WAIT_S) -> Any:
        """Send `op` and wait for the writer's answer; raise what the writer raised."""
        return self._answer(op, self._ask(op, *args), timeout_s)

    def _ask(self, op: str, *args: Any) -> Future[Any]:
        """Send `op` now; its answer completes the future."""
        future: Future[Any] = Future()
        with self._lock:
            if self._gone is not None:
                raise WriterGone(self._gone)
            request = next(self._refs)
            self._waiting[request] = future
            self._outbox.append(("call", request, op, args))
            self._urgent = True
            self._lock.notify()
        return future

    @staticmethod
    def _answer(op: str, future: Future[Any], timeout_s: float) -> Any:
        try:
            return future.result(timeout=timeout_s)
        except TimeoutError:
            raise WriterGone(
                f"MLflow's writer process did not answer '{op}' within {timeout_s:g} s"
            ) from None

    def _send_loop(self) -> None:
        while True:
            with self._lock:
                while not self._outbox and self._gone is None:
                    self._lock.wait()
                if not self._urgent:  # let a burst of span messages gather (see LINGER_S)
                    self._lock.wait(LINGER_S)
                if self._gone is not None:
                    return
                batch, self._outbox, self._urgent = self._outbox, [], False
                self._lock.notify_all()  # a flow waiting for room (see `MAX_QUEUED`)
            payload, dropped = _dumps(batch)
            for message in dropped:
                self._failed_message(message)
            try:
                _write_frame(self._out, payload)
            except (OSError, ValueError):
                self._lost("its input closed")
                return

    def _failed_message(self, message: tuple[Any, ...]) -> None:
        if message[0] == "call":
            future = self._waiting.pop(message[1], None)
            if future is not None:
                future.set_exception(WriterError(f"'{message[2]}' got a value it cannot send"))
        else:
            self._span_problem(f"a span value that cannot be sent to the writer ({message[0]})")

    def _read_loop(self) -> None:
        while True:
            try:
                payload = _read_frame(self._in)
                replies = pickle.loads(payload) if payload is not None else None
            except Exception:
                replies = None
            if replies is None:
                if self._process is not None:
                    self._lost(f"it exited with code {self._process.wait()}")
                else:
                    self._lost("it closed its connection")
                self._ended.set()
                return
            for request, ok, value in replies:
                if request == 0:
                    self._span_problem(str(value))
                    continue
                with self._lock:
                    future = self._waiting.pop(request, None)
                if future is None:
                    continue
                if ok:
                    future.set_result(value)
                else:
                    kind, text = value
                    unavailable = kind == "TrackingUnavailable"
                    error = TrackingUnavailable(text) if unavailable else WriterError(text)
                    future.set_exception(error)

    def _lost(self, why: str) -> None:
        with self._lock:
            if self._gone is None:
                self._gone = f"MLflow's writer process for {self.tracking_uri} is gone ({why})"
            waiting, self._waiting = self._waiting, {}
            self._lock.notify_all()
        for future in waiting.values():
            future.set_exception(WriterGone(str(self._gone)))

    def _span_problem(self, problem: str) -> None:
        if self._warned:
            return
        self._warned = True
        emit_warning(
            f"MLflow could not record a span in {self.tracking_uri} ({problem}); the flow runs, "
            "and its trace may miss spans"
        )

    # -- Backend's methods -----------------------------------------------------------------------

    def use_for_traces(self) -> None:
        """The writer's traces go to its one store (there is one writer per store)."""

    def experiment_id(self, name: str, artifact_root: str | None = None) -> str:
        return str(self._call("experiment_id", name, artifact_root))

    def start_run(
        self, experiment_id: str, run_name: str, tags: Mapping[str, str], parent_run_id: str | None
    ) -> str:
        return str(self._call("start_run", experiment_id, run_name, dict(tags), parent_run_id))

    def log_params(self, run_id: str, params: Mapping[str, str]) -> None:
        self._call("log_params", run_id, dict(params))

    def log_metrics(self, run_id: str, metrics: list[tuple[str, float, int, int]]) -> None:
        self._call("log_metrics", run_id, list(metrics))

    def set_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        self._call("set_tags", run_id, dict(tags))

    def log_dict(self, run_id: str, data: Mapping[str, Any], artifact_file: str) -> None:
        self._call("log_text", run_id, json.dumps(data, indent=1, default=str), artifact_file)

    def log_table(self, run_id: str, data: Any, artifact_file: str) -> None:
        self._call("log_table", run_id, data, artifact_file)

    def log_artifact(self, run_id: str, path: str, artifact_path: str | None) -> None:
        self._call("log_artifact", run_id, path, artifact_path)

    def log_dataset(self, run_id: str, **fields: Any) -> None:
        self._call("log_dataset", run_id, fields)

    def end_run(self, run_id: str, *, failed: bool) -> None:
        self._call("end_run", run_id, failed)

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
    ) -> ProxySpan:
        span = ProxySpan(self, next(self._refs))
        parent_ref = parent.ref if isinstance(parent, ProxySpan) else None
        self._send(
            (
                "span",
                span.ref,
                parent_ref,
                name,
                span_type,
                inputs,
                dict(attributes),
                experiment_id,
                run_id,
                start_time_ns if start_time_ns is not None else time.time_ns(),
            )
        )
        if parent is None:
            span.ask_ids()
        return span

    @contextlib.contextmanager
    def current_span(self, span: Any) -> Iterator[None]:
        """MLflow's current span exists in the writer only: user spans here do not nest (a flow
        whose code uses MLflow does not use the writer; see the module docstring)."""
        yield

    @staticmethod
    def end_span(
        span: Any, *, outputs: Any, error: BaseException | None, end_ns: int | None = None
    ) -> None:
        Backend.end_span(span, outputs=outputs, error=error, end_ns=end_ns)

    def flush_traces(self, timeout_s: float = 120.0) -> bool:
        """Wait (bounded) until the writer has done everything sent so far, spans written."""
        try:
            return bool(self._call("flush", timeout_s, timeout_s=timeout_s + 5.0))
        except WriterError:
            return False

    @property
    def client(self) -> Any:
        """An MLflow client of this process for the same store (MLflow's fluent API in user
        code needs one; that code imported MLflow already)."""
        if self._client_backend is None:
            self._client_backend = Backend.for_uri(self.tracking_uri, 10.0)
        return self._client_backend.client

    # -- the end -------------------------------------------------------------------------------

    def close(self, timeout_s: float) -> bool:
        """Let the writer finish what it was given and exit; wait for it (bounded). True if it
        ended in time; else it is stopped, and what it had not written is lost."""
        with self._lock:
            if self._gone is None:
                self._outbox.append(("close",))
                self._urgent = True
                self._lock.notify()
        try:
            if self._ended.wait(timeout_s):
                return True
            if self._process is not None:
                self._process.kill()
            elif self._shared is not None:
                self._shared.kill()
            self._ended.wait(5.0)
            return False
        finally:
            if self._process is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._process.wait(5.0)
            if self._shared is not None:
                self._shared.close()
                self._shared.wait_gone(5.0)  # its connection closes as it exits
            with self._cache_lock:
                if self._cache.get(self.tracking_uri) is self:
                    del self._cache[self.tracking_uri]


def flush_all(timeout_s: float) -> bool:
    """Wait (bounded) for every writer of this process to have done all it was sent."""
    return _each_writer(ProcessBackend.flush_traces, timeout_s)


def close_all(timeout_s: float) -> bool:
    """Close every writer of this process (see `ProcessBackend.close`), within one bound."""
    return _each_writer(ProcessBackend.close, timeout_s)


def _each_writer(step: Callable[[ProcessBackend, float], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    done = True
    for backend in ProcessBackend.all():
        done = step(backend, max(0.0, deadline - time.monotonic())) and done
    return done


# -- the writer's side ---------------------------------------------------------------------------


class _Writer:
    """What runs in the writer process: one `Backend`, the live spans, in message order."""

    def __init__(self, reply: Callable[[tuple[Any, ...]], None]) -> None:
        self.backend: Backend | None = None
        self.reply = reply
        self.spans: dict[int, Any] = {}
        self.parents: set[int] = set()  # spans with children: kept after they end
        self.trace_of: dict[int, int] = {}  # span -> the root span of its trace
        self.kept: dict[int, list[int]] = {}  # root -> ended spans kept for late children
        self.root_ids: dict[int, tuple[str, str]] = {}  # ended roots (links ask after the end)

    def handle(self, message: tuple[Any, ...]) -> bool:
        """Do one message; False when the flow's process said it is done."""
        op = message[0]
        if op == "close":
            return False
        try:
            if op == "call":
                self._call(*message[1:])
            else:
                getattr(self, f"_{op}")(*message[1:])
        except Exception as exc:
            self.reply((0, False, f"{op}: {exc}"))
        return True

    def _call(self, request: int, op: str, args: tuple[Any, ...]) -> None:
        try:
            value = self._do(op, args)
        except Exception as exc:
            self.reply((request, False, (type(exc).__name__, str(exc))))
            return
        self.reply((request, True, value))

    def _do(self, op: str, args: tuple[Any, ...]) -> Any:
        if op == "open":
            uri, timeout_s = args
            _mlflow_compat.cached_span_upserts()  # this process is Latent's alone
            self.backend = Backend.for_uri(uri, timeout_s)
            self.backend.use_for_traces()
            gc.freeze()  # see `serve`: MLflow's modules and the store, never scanned again
            gc.enable()
            return None
        if op == "ids":
            if args[0] in self.root_ids:
                return self.root_ids[args[0]]
            span = self.spans[args[0]]
            return str(span.trace_id), str(span.span_id)
        if self.backend is None:
            raise WriterError("the store is not open")
        if op == "flush":
            return self.backend.flush_traces(args[0])
        if op == "end_run":
            run_id, failed = args
            return self.backend.end_run(run_id, failed=failed)
        if op == "log_dataset":
            run_id, fields = args
            return self.backend.log_dataset(run_id, **fields)
        if op == "log_text":
            run_id, text, artifact_file = args
            return self.backend.client.log_text(run_id, text, artifact_file)
        if op not in _CALLS:
            raise WriterError(f"unknown call {op!r}")
        return getattr(self.backend, op)(*args)

    def _span(
        self,
        ref: int,
        parent_ref: int | None,
        name: str,
        span_type: str,
        inputs: Any,
        attributes: dict[str, Any],
        experiment_id: str | None,
        run_id: str | None,
        start_ns: int,
    ) -> None:
        if self.backend is None:
            return
        parent = self.spans.get(parent_ref) if parent_ref is not None else None
        if parent_ref is not None and parent is None:
            return  # its parent was not recorded: neither is it (not a trace of its own)
        if parent_ref is not None:
            self.parents.add(parent_ref)
            self.trace_of[ref] = self.trace_of.get(parent_ref, parent_ref)
        self.spans[ref] = self.backend.start_span(
            name,
            span_type,
            parent=parent,
            inputs=inputs,
            attributes=attributes,
            experiment_id=experiment_id,
            run_id=run_id,
            start_time_ns=start_ns,
        )

    def _attr(self, ref: int, key: str, value: Any) -> None:
        span = self.spans.get(ref)
        if span is not None:
            span.set_attribute(key, value)

    def _exc(self, ref: int, kind: str, text: str) -> None:
        span = self.spans.get(ref)
        if span is not None:
            span.record_exception(type(kind, (Exception,), {})(text))

    def _end(self, ref: int, outputs: Any, end_ns: int | None) -> None:
        span = self.spans.get(ref)
        if span is None:
            return
        span.end(outputs=outputs, end_time_ns=end_ns)
        root = self.trace_of.pop(ref, None)
        if root is None:  # a trace's root: its kept spans can go
            self.root_ids[ref] = (str(span.trace_id), str(span.span_id))
            for kept in self.kept.pop(ref, []):
                self.spans.pop(kept, None)
                self.parents.discard(kept)
            self.spans.pop(ref, None)
            self.parents.discard(ref)
        elif ref in self.parents:  # a parent may still get late children until its root ends
            self.kept.setdefault(root, []).append(ref)
        else:
            del self.spans[ref]


_CALLS = frozenset(
    {"experiment_id", "start_run", "log_params", "log_metrics", "set_tags", "log_table",
     "log_artifact"}
)  # fmt: skip


def serve(
    exit_wait_s: float, frames_in: IO[bytes] | None = None, frames_out: IO[bytes] | None = None
) -> None:
    """The writer process: messages in, answers out, until close or end of input.

    A private writer talks over its stdin and stdout; one forked by the shared writer
    (`_shared`) over its socket.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Importing MLflow and opening its store build several hundred thousand long-lived objects;
    # the collector would scan them over and over meanwhile (~15 % of the time the flow may be
    # waiting for). Off until the store is open, then those objects are frozen (`_Writer._do`).
    gc.disable()
    if frames_out is None:
        frames_out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
        os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # a stray print must not break a frame
    if frames_in is None:
        frames_in = sys.stdin.buffer
    if os.environ.get("MLFLOW_LOGGING_LEVEL", "").upper() not in ("DEBUG", "INFO"):
        import logging

        for name in ("mlflow", "alembic"):
            logging.getLogger(name).setLevel(logging.WARNING)
    import warnings

    warnings.simplefilter("ignore")
    replies: list[tuple[Any, ...]] = []
    writer = _Writer(replies.append)
    closed = False
    while not closed:
        payload = _read_frame(frames_in)
        if payload is None:
            break  # the flow's process is gone: write what was sent, then exit
        for message in pickle.loads(payload):
            if not writer.handle(message):
                closed = True
                break
        if replies:
            _write_frame(frames_out, pickle.dumps(replies, protocol=pickle.HIGHEST_PROTOCOL))
            replies.clear()
    if writer.backend is not None:
        with contextlib.suppress(Exception):
            writer.backend.flush_traces(exit_wait_s)
    frames_out.close()
    sys.stderr.flush()
    # Everything is written (the flush above, with its bound). Tearing the interpreter down
    # would only run MLflow's at-exit flush (which has no bound) and stop its threads: about a
    # second that the flow's process, waiting for this one to end, would pay.
    os._exit(0)
