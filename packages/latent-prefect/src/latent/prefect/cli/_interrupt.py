"""Ctrl-C and SIGTERM during `latent run`: stop within seconds, exit 130 / 143.

The first signal interrupts the flow; finished tasks keep their cached results (each is stored
when it finishes). Prefect's engine only marks the flow run Crashed after its task runner has
waited for every running task, which for a row stuck in a model call can be minutes; so the
first signal also starts a short grace period, after which this marks the flow run Crashed on
the server itself and exits. A second signal does that at once.

Prefect replaces the SIGTERM handler while a flow runs, so signals are noticed through
`signal.set_wakeup_fd` (the interpreter writes every signal's number there, whichever Python
handler is installed) by a watcher thread.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from types import FrameType
from typing import Any

#: Seconds the process may take to finish after the first signal before it exits regardless.
GRACE_S = 5.0
_NAMES: dict[int, str] = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}
_WATCHED = (signal.SIGINT, signal.SIGTERM)


class _State:
    """The signals received so far and the flow run in progress (to mark it Crashed)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.received: list[int] = []
        self.first = threading.Event()
        self.flow_run_id: Any = None
        self.api_url: str | None = None


_state = _State()


def remember_flow_run(flow: Any, flow_run: Any, state: Any) -> None:
    """A Prefect `on_running` hook: note the flow run, so an interrupt can mark it Crashed."""
    from prefect.settings import get_current_settings

    _state.flow_run_id = flow_run.id
    _state.api_url = get_current_settings().api.url


@contextmanager
def handled() -> Iterator[None]:
    """Turn SIGINT/SIGTERM into a prompt, bounded exit with code 128 + signal number."""
    restore = _install() if threading.current_thread() is threading.main_thread() else None
    try:
        yield
    except BaseException as exc:
        signum = _signal_of(exc)
        if signum is None:
            raise
        _state.first.wait(1.0)  # the watcher records the signal (it runs in its own thread)
        code = 128 + (_state.received[0] if _state.received else signum)
        _exit_now(code, mark_crashed=True)
    finally:
        if restore is not None:  # the command returned (or failed): as it was before
            restore()


def _install() -> Callable[[], None] | None:
    def on_signal(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    reader, writer = socket.socketpair()
    writer.setblocking(False)
    try:
        previous_fd = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    except ValueError:  # not the main thread of the main interpreter
        reader.close()
        writer.close()
        return None
    previous = {signum: signal.signal(signum, on_signal) for signum in _WATCHED}
    threading.Thread(target=_watch, args=(reader,), daemon=True).start()

    def restore() -> None:
        signal.set_wakeup_fd(previous_fd)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        writer.close()  # the watcher's recv returns b"": it ends

    return restore


def _watch(reader: socket.socket) -> None:
    with reader:
        while True:
            try:
                data = reader.recv(64)
            except OSError:
                return
            if not data:
                return
            for signum in data:
                if signum in _WATCHED:
                    _received(signum)


def _received(signum: int) -> None:
    with _state.lock:
        first = not _state.received
        _state.received.append(signum)
    if not first:  # the second signal: stop now
        _exit_now(128 + _state.received[0], mark_crashed=True)
    message = (
        f"\nInterrupted ({_NAMES.get(signum, str(signum))}): stopping the run; finished tasks "
        "are cached and the next run resumes from them. Press Ctrl-C again to stop at once.\n"
    )
    with suppress(OSError):
        os.write(2, message.encode())
    _state.first.set()
    timer = threading.Timer(GRACE_S, _exit_now, args=(128 + signum,), kwargs={"mark_crashed": True})
    timer.daemon = True
    timer.start()


def _signal_of(exc: BaseException) -> int | None:
    """The signal behind `exc`: Ctrl-C's KeyboardInterrupt or Prefect's TerminationSignal."""
    if isinstance(exc, KeyboardInterrupt):
        return _state.received[0] if _state.received else signal.SIGINT
    from_prefect = getattr(exc, "signal", None)
    if type(exc).__name__ == "TerminationSignal" and isinstance(from_prefect, int):
        return from_prefect
    return None


def _exit_now(code: int, *, mark_crashed: bool) -> None:
    """Exit at once: the flow run marked Crashed on the server (if Prefect has not ended it),
    this run's own child processes stopped (an ephemeral Prefect server, pool workers; not the
    managed server, which runs in a session of its own)."""
    if mark_crashed:
        with suppress(Exception):
            _mark_crashed()
    _stop_children()
    for stream in (sys.stdout, sys.stderr):
        with suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)


def _mark_crashed() -> None:
    if _state.flow_run_id is None or not _state.api_url:
        return
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings
    from prefect.states import Crashed

    with (
        temporary_settings(updates={PREFECT_API_URL: _state.api_url}),
        get_client(sync_client=True, httpx_settings={"timeout": 5}) as client,
    ):
        run = client.read_flow_run(_state.flow_run_id)
        if run.state is None or not run.state.is_final():
            client.set_flow_run_state(
                _state.flow_run_id,
                Crashed(message="Interrupted by a signal to `latent run`."),
                force=True,
            )


def _stop_children() -> None:
    import psutil

    if not hasattr(os, "getsid"):  # Windows: no sessions to tell the managed server apart
        return
    try:
        session = os.getsid(0)
        children = [
            child
            for child in psutil.Process().children(recursive=True)
            if _session_of(child.pid) == session
        ]
    except (psutil.Error, OSError):
        return
    for child in children:
        with suppress(psutil.Error):
            child.kill()


def _session_of(pid: int) -> int | None:
    try:
        return os.getsid(pid)
    except OSError:
        return None
