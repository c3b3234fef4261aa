"""Where a value a task receives came from, so the pipeline picture shows how data moves.

Within one flow run, a value a task returned and a dataset the flow loaded as its `input` are
remembered by identity (the object is kept alive until the run ends, so its id is not reused).
When a task is called, each argument (and each item of a list, tuple or dict argument, one level
down) that is such a value names its origin: another task's output draws a data edge between the
tasks; a flow input makes the task a reader of that dataset. A flow `output` whose value a task
returned is drawn as that task's output.

Values Python shares between unrelated places (None, numbers, strings, tuples) are never
remembered: their identity says nothing about where they came from.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from latent.registry import TaskRegistry
from prefect.utilities.annotations import BaseAnnotation

__all__ = ["note_dataset", "note_result", "record_call", "record_output", "tracking"]

_Origin = tuple[str, str]  # ("task", name) or ("dataset", name)
_SHARED = (type(None), bool, int, float, complex, str, bytes, tuple, frozenset)
_ONE_LEVEL_MAX = 10_000  # items of a list argument looked at; beyond, the picture stops looking

_origins: ContextVar[dict[int, tuple[Any, _Origin]] | None] = ContextVar(
    "latent_lineage", default=None
)


@contextmanager
def tracking() -> Iterator[None]:
    """Remember origins for one flow run (a subflow keeps its own)."""
    token = _origins.set({})
    try:
        yield
    finally:
        _origins.reset(token)


def _remember(value: Any, origin: _Origin) -> None:
    seen = _origins.get()
    if seen is not None and not isinstance(value, _SHARED):
        seen[id(value)] = (value, origin)


def note_dataset(value: Any, dataset: str) -> None:
    """`value` is the flow input `dataset` (as named in `@flow(input=[...])`)."""
    _remember(value, ("dataset", dataset))


def note_result(value: Any, task: str) -> None:
    """`value` (a result, or the future of one) was returned by `task`."""
    _remember(value, ("task", task))


def _origins_of(arguments: Iterable[Any]) -> Iterator[_Origin]:
    seen = _origins.get()
    if not seen:
        return
    for value in arguments:
        if isinstance(value, BaseAnnotation):  # unmapped(x), quote(x), allow_failure(x)
            value = value.unwrap()
        yield from _lookup(seen, value)
        if isinstance(value, Mapping):
            value = value.values()
        if isinstance(value, (list, tuple, Mapping, type({}.values()))):
            for index, item in enumerate(value):
                if index >= _ONE_LEVEL_MAX:
                    break
                yield from _lookup(seen, item)


def _lookup(seen: dict[int, tuple[Any, _Origin]], value: Any) -> Iterator[_Origin]:
    hit = seen.get(id(value))
    if hit is not None and hit[0] is value:
        yield hit[1]


def record_call(flow: str, task: str, arguments: Iterable[Any]) -> None:
    """Register where `task`'s arguments came from: data edges and flow inputs it reads."""
    for kind, name in set(_origins_of(arguments)):
        if kind == "task":
            TaskRegistry.register_edge(flow, name, task)
        else:
            TaskRegistry.register_task(flow, task, inputs=[name])


def record_output(flow: str, dataset: str, value: Any) -> None:
    """Register the task that returned the value the flow saves as its output `dataset`."""
    for kind, name in _origins_of([value]):
        if kind == "task":
            TaskRegistry.register_task(flow, name, outputs=[dataset])
            return
