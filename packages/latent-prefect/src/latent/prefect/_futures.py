"""Futures for calls Latent answers itself: cache hits and mapped rows.

A `.map` row and a `.submit` answered from the cache are not Prefect task runs, yet users hold
their futures the Prefect way: `.result()`, `.wait()`, `.state`, `add_done_callback`, and
`prefect.futures.wait` / `as_completed`. `RowFuture` is a `PrefectFuture` that a row engine (or
a cache hit) completes; its `task_run_id` is the Prefect task run that ran the row's batch, or,
for a hit, an id derived from the cache key (the same hit gives the same id).

A map makes one future per row, so a future is cheap until used: its Prefect `State` is built
when first read, and its event only when someone waits before it is done.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from latent.prefect import _prefect_compat
from prefect.futures import PrefectFuture
from prefect.states import Completed, Failed, Pending, State

R = TypeVar("R")

_CACHED_IDS = uuid.UUID("6c1b2f4e-3f7a-4d55-9b3e-1a1e7a7e5c01")

# Guards every future's completion, waiters and callbacks: each critical section is a few
# assignments, and one lock is cheaper than one per row.
_LOCK = threading.Lock()


class RowFuture(PrefectFuture[R], Generic[R]):
    """The future of one row (or one cache hit); completed once by `set_result`/`set_error`."""

    def __init__(self, task_name: str, row: int | None = None) -> None:
        # PrefectFuture.__init__ is deprecated for subclasses: Prefect asks for our own.
        self.task_name = task_name
        self.row = row
        self._batch_run_id: uuid.UUID | None = None
        self._value: Any = None
        self._error: BaseException | None = None
        self._status: str | None = None  # "Completed", "Cached", "Failed" once done
        self._state: State[Any] | None = None
        self._event: threading.Event | None = None  # made by the first early waiter
        self._callbacks: list[Callable[[PrefectFuture[R]], None]] = []

    def attach(self, task_run_id: uuid.UUID | None) -> None:
        """Name the Prefect task run this row ran in (its batch)."""
        self._batch_run_id = task_run_id

    @property
    def task_run_id(self) -> uuid.UUID:
        return self._batch_run_id or uuid.UUID(int=0)

    def _built_state(self) -> State[Any] | None:
        """The final state (None while running), made on first read."""
        if self._status is None:
            return None
        if self._state is None:
            message = self._message(self._status)
            if self._status == "Failed":
                self._state = Failed(data=self._error, message=f"{message}: {self._error}")
            elif self._status == "Cached":
                self._state = Completed(data=self._value, name="Cached", message=message)
            else:
                self._state = Completed(data=self._value, message=message)
        return self._state

    _final_state = _prefect_compat.final_state_property(_built_state)

    @property
    def state(self) -> State[Any]:
        final = self._built_state()
        return final if final is not None else Pending()

    def wait(self, timeout: float | None = None) -> None:
        self._wait(timeout)

    def _wait(self, timeout: float | None) -> bool:
        if self._status is not None:
            return True
        with _LOCK:
            if self._status is not None:
                return True
            if self._event is None:
                self._event = threading.Event()
            event = self._event
        return event.wait(timeout)

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> R:
        if not self._wait(timeout):
            raise TimeoutError(f"Row {self.row} of task '{self.task_name}' is not done")
        if self._error is not None:
            if raise_on_failure:
                raise self._error
            return self._error  # type: ignore[return-value]  # Prefect's convention
        return self._value  # type: ignore[no-any-return]

    def add_done_callback(self, fn: Callable[[PrefectFuture[R]], None]) -> None:
        with _LOCK:
            if self._status is None:
                self._callbacks.append(fn)
                return
        fn(self)

    def done(self) -> bool:
        return self._status is not None

    def set_result(self, value: R) -> None:
        self._value = value
        self._finish("Completed")

    def set_cached(self, value: R, key: str) -> None:
        """Complete with a cached value; the id names the cached result under `key`."""
        self.attach(uuid.uuid5(_CACHED_IDS, key))
        self._value = value
        self._finish("Cached")

    def set_error(self, error: BaseException) -> None:
        self._error = error
        self._finish("Failed")

    def _message(self, status: str) -> str:
        where = f"row {self.row} of " if self.row is not None else ""
        return f"{status}: {where}task '{self.task_name}' (Latent)"

    def _finish(self, status: str) -> None:
        with _LOCK:
            self._status = status
            event, self._event = self._event, None
            callbacks, self._callbacks = self._callbacks, []
        if event is not None:
            event.set()
        for fn in callbacks:
            fn(self)

    def __repr__(self) -> str:
        where = f", row={self.row}" if self.row is not None else ""
        return f"RowFuture(task={self.task_name!r}{where})"


#: The name the first release exported; a cache hit's future is a finished `RowFuture`.
CachedFuture = RowFuture
