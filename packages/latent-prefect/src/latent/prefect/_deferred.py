"""`@flow` and `@task` that wait for Prefect while `latent run` checks the configuration.

A mistake in a flow's parameters or typed config must cost about a second, and importing Prefect
alone takes 1.5 s of CPU. So while `latent run` imports flow files (`deferring()`), `@flow` and
`@task` return placeholders that hold what they were given (a flow's spec is all the checks
need); `materialize()` then imports Prefect and turns each placeholder into the real
`LatentFlow` / `LatentTask`. It is the same object, its class switched and its attributes those
of a freshly built one, so every reference the flow file took (module globals, lists, closures)
is the real thing afterwards: `isinstance`, pickling, `with_options` and subflows see no
difference. Using a placeholder for anything else (a call, `.map`, `.with_options`, pickling)
materializes it first, so nothing else needs to know about placeholders.

Outside `deferring()` (scripts, notebooks, workers, `load_flow`), or once Prefect is imported,
the decorators build the real objects at once, exactly as `latent.prefect._flow.flow` /
`latent.prefect._task.task` do. The one difference a flow file can see: code at its top level
that asks `isinstance(x, prefect.Task)` of a task decorated before it imported Prefect itself.
"""

from __future__ import annotations

import contextvars
import functools
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Generic, ParamSpec, TypeVar

from pydantic import BaseModel

from latent.prefect._flow_spec import FlowSpec, make_spec
from latent.prefect.errors import FlowImportError

__all__ = ["deferring", "flow", "materialize", "task", "unmapped"]

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

_deferring: contextvars.ContextVar[bool] = contextvars.ContextVar("latent_deferring", default=False)
_pending: list[_Placeholder[Any, Any]] = []
_lock = threading.RLock()


@contextmanager
def deferring() -> Iterator[None]:
    """Within this block, `@flow` / `@task` return placeholders (see the module docstring),
    unless Prefect is imported already (by the flow file itself, say): then there is nothing to
    save, and the real objects are built at once."""
    token = _deferring.set(True)
    try:
        yield
    finally:
        _deferring.reset(token)


def materialize() -> None:
    """Build every placeholder into its real flow or task (this imports Prefect).

    A decorator argument Prefect rejects raises FlowImportError naming the function's file and
    line: the mistake is in the flow file, as it would have been found importing it.
    """
    with _lock:
        while _pending:
            _pending[0].materialize()


def flow(
    name: str | Callable[..., Any] | None = None,
    *,
    input: Sequence[str] | None = None,
    output: Sequence[str] | None = None,
    config_schema: type[BaseModel] | None = None,
    **flow_kwargs: Any,
) -> Any:
    """Make a function a Latent flow; `name` must match its directory under `flows/`."""
    if callable(name):
        return flow()(name)

    def decorate(fn: Callable[P, R]) -> Any:
        spec = make_spec(fn, name or fn.__name__, input, output, config_schema)
        if not _deferring.get() or "prefect" in sys.modules:
            from latent.prefect._flow import build_flow

            return build_flow(spec, flow_kwargs)
        return _PendingFlow(fn, (spec,), flow_kwargs)

    return decorate


def task(name: str | Callable[..., Any] | None = None, **task_kwargs: Any) -> Any:
    """Make a function (sync or `async def`) a Latent task; see the docs page for each option."""
    if callable(name):
        return task()(name)

    def decorate(fn: Callable[P, R]) -> Any:
        if not _deferring.get() or "prefect" in sys.modules:
            from latent.prefect._task import task as build

            return build(name, **task_kwargs)(fn)
        return _PendingTask(fn, (name,), task_kwargs)

    return decorate


class _Placeholder(Generic[P, R]):
    """A flow or task not built yet. Generic like Prefect's Flow and Task, so that the object
    layouts match and `materialize` can switch its class to theirs."""

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]):
        functools.update_wrapper(self, fn)
        vars(self)["_latent_building"] = (fn, args, kwargs)
        with _lock:
            _pending.append(self)

    def _build(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        raise NotImplementedError

    def materialize(self) -> None:
        """Become the real flow or task (idempotent; other threads wait for it)."""
        with _lock:
            building = vars(self).get("_latent_building")
            if building is None:
                return  # built already, by another thread
            _pending.remove(self)
            fn, args, kwargs = building
            try:
                real = self._build(fn, args, kwargs)
            except Exception as exc:
                code = fn.__code__
                raise FlowImportError(
                    f"{code.co_filename}:{code.co_firstlineno} {fn.__qualname__}: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            state = vars(self)
            state.clear()
            state.update(vars(real))
            self.__class__ = type(real)  # type: ignore[assignment]

    def __getattr__(self, name: str) -> Any:
        # only for attributes the placeholder does not have: everything but its own few
        if name.startswith("__") or "_latent_building" not in vars(self):
            raise AttributeError(name)
        self.materialize()
        return getattr(self, name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        materialize()  # a flow's call runs its tasks: build them all
        return self(*args, **kwargs)

    def __reduce_ex__(self, protocol: Any) -> Any:
        self.materialize()
        return self.__reduce_ex__(protocol)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.__qualname__} (not built yet)>"


class _PendingFlow(_Placeholder[P, R]):
    """`@flow` before Prefect: its name and spec are what `latent run` checks."""

    def __init__(
        self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> None:
        super().__init__(fn, args, kwargs)
        spec: FlowSpec = args[0]
        vars(self).update(name=spec.name, spec=spec)

    def _build(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        from latent.prefect._flow import build_flow

        return build_flow(args[0], kwargs)


class _PendingTask(_Placeholder[P, R]):
    """`@task` before Prefect."""

    def _build(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        from latent.prefect._task import task as build

        return build(*args, **kwargs)(fn)


def unmapped(value: T) -> Any:
    """Prefect's ``unmapped(value)``: an argument every mapped row gets whole, not split.

    Prefect is imported at the first call, inside a flow, so that a flow file importing this
    (``from latent.prefect import unmapped``) does not import Prefect while `latent run` checks
    the configuration.
    """
    from prefect import unmapped as prefect_unmapped

    return prefect_unmapped(value)
