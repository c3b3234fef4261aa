"""One background thread per process that does MLflow's slow work, in order.

Importing MLflow and opening its store take seconds; a flow must not wait for them before its
first task. Work handed here runs first-in first-out on a daemon thread (a hung tracking server
never keeps the process alive); whoever needs a result waits on its future, with a bound.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

T = TypeVar("T")

_queue: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = queue.SimpleQueue()
_thread: threading.Thread | None = None
_pid: int | None = None
_lock = threading.Lock()


def submit(fn: Callable[[], T]) -> Future[T]:
    """Run `fn` on the background thread after everything submitted before it."""
    global _queue, _thread, _pid
    future: Future[T] = Future()
    with _lock:
        if _pid != os.getpid():  # a forked child has the queue object but not the thread
            _queue, _thread, _pid = queue.SimpleQueue(), None, os.getpid()
        if _thread is None:
            _thread = threading.Thread(target=_loop, args=(_queue,), name="latent-mlflow")
            _thread.daemon = True
            _thread.start()
        _queue.put((fn, future))
    return future


def started() -> bool:
    """True once this process has handed the background thread work."""
    return _thread is not None and _pid == os.getpid()


def in_background() -> bool:
    """True on the background thread itself (which must never wait for its own queue)."""
    return threading.current_thread() is _thread


def _loop(work: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]]) -> None:
    while True:
        fn, future = work.get()
        if not future.set_running_or_notify_cancel():
            continue
        try:
            future.set_result(fn())
        except BaseException as exc:
            future.set_exception(exc)
