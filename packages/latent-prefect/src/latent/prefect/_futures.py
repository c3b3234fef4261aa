"""A Prefect future for a result that came from the cache without a task run.

`.map` and `.submit` look keys up before asking Prefect for a task run; a hit is returned as a
`CachedFuture`, which behaves like any finished Prefect future: `.result()`, `.wait()`,
`.state` (a Completed state named "Cached"), and `prefect.futures.wait` / `as_completed` accept it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from prefect.futures import PrefectTaskRunFuture
from prefect.states import Completed, State

R = TypeVar("R")


class CachedFuture(PrefectTaskRunFuture[R], Generic[R]):
    """A finished future holding a cached value; no Prefect task run stands behind it."""

    def __init__(self, value: R, task_name: str) -> None:
        self._task_run_id = uuid.uuid4()
        self._value = value
        self.task_name = task_name
        self._final_state: State[R] | None = Completed(
            data=value, name="Cached", message=f"Cached result of task '{task_name}' (Latent)"
        )

    @property
    def state(self) -> State:
        assert self._final_state is not None
        return self._final_state

    def wait(self, timeout: float | None = None) -> None:
        return None

    def result(self, timeout: float | None = None, raise_on_failure: bool = True) -> R:
        return self._value

    def add_done_callback(self, fn: Callable[[Any], None]) -> None:
        fn(self)

    def __repr__(self) -> str:
        return f"CachedFuture(task={self.task_name!r})"
