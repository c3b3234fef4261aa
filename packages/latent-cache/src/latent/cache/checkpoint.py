"""``@checkpoint``: resumable loops. Results persist to disk in development, no-op in production.

A checkpointed function called again with the same arguments, in this process or after a crash
and restart, returns its stored result instead of running. It is active only when the
environment is ``dev``/``development`` (see :func:`checkpoints_enabled`); in production it calls
the function straight through, so runs are fresh and predictable.

All checkpointed functions of a process that use the same directory share one
:class:`CacheStore` (created once, under a lock, see :func:`shared_store`), which is safe from
many threads and from several processes, never evicts and never drops a write. Entries are
keyed by qualified name + code signature + stable hash of the arguments, so two functions with
the same arguments never share one and an edited function recomputes.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from typing import Any, TypeVar, overload

from latent.cache import _environment
from latent.cache._memo import memoize
from latent.cache.store import CacheStore, shared_store

__all__ = [
    "checkpoint",
    "checkpoints_enabled",
    "checkpoints_for",
    "clear_checkpoints",
    "configure_checkpoints",
]

F = TypeVar("F", bound=Callable[..., Any])


def checkpoints_enabled() -> bool:
    """True when this process runs in ``dev``/``development``.

    The environment is the one given to :func:`configure_checkpoints`, else
    ``LATENT_ENVIRONMENT``, else ``environment`` in ``config/latent.toml`` (searched from the
    current directory upwards), else ``production``.
    """
    return _environment.environment().strip().lower() in _environment.DEV_ENVIRONMENTS


@contextlib.contextmanager
def checkpoints_for(
    *, environment: str | None = None, directory: str | os.PathLike[str] | None = None
) -> Iterator[None]:
    """Within this block (this thread or task only), use this environment and directory.

    What latent-prefect sets for each flow run, so two projects running at once in one process
    (threads, asyncio) never write into each other's checkpoints.
    """
    token = _environment.scope(environment=environment, directory=directory)
    try:
        yield
    finally:
        _environment.unscope(token)


def configure_checkpoints(
    *, environment: str | None = None, directory: str | os.PathLike[str] | None = None
) -> None:
    """Set this process's environment and default checkpoint directory (None: leave as is).

    The hook latent-prefect calls at flow start with the project's settings, so checkpoints
    follow the project rather than the current directory.
    """
    _environment.configure(environment=environment, directory=directory)


@overload
def checkpoint(fn: F) -> F: ...


@overload
def checkpoint(
    fn: None = None, *, directory: str | os.PathLike[str] | None = ...
) -> Callable[[F], F]: ...


def checkpoint(
    fn: Callable[..., Any] | None = None,
    *,
    directory: str | os.PathLike[str] | None = None,
) -> Any:
    """Persist ``fn``'s results per argument set, so a rerun after a crash resumes where it was.

    Use as ``@checkpoint`` or ``@checkpoint(directory=...)``. The default directory is the
    configured one, else ``<project>/.latent/cache``, else ``./.latent/cache``.
    """

    def decorate(func: Callable[..., Any]) -> Any:
        return memoize(
            func,
            store=_resolver(directory),
            expire=...,
            kind="checkpoint",
            active=checkpoints_enabled,
        )

    return decorate(fn) if fn is not None else decorate


def clear_checkpoints(
    directory: str | os.PathLike[str] | None = None, *, function: str | None = None
) -> int:
    """Remove checkpointed results (all, or those of ``function``); return how many.

    Only checkpoint entries are removed: ``@cached`` results and task caches sharing the
    directory stay. ``function`` matches a qualified name exactly or by its last dotted parts
    (``"expensive_llm_call"`` matches ``"flow.process_documents.<locals>.expensive_llm_call"``).
    """
    store = _checkpoint_store(directory)
    removed = 0
    for entry in store.entries(function=function):
        if entry.ingredients.get("kind") == "checkpoint" and store.delete(entry.key):
            removed += 1
    return removed


def _checkpoint_store(directory: str | os.PathLike[str] | None) -> CacheStore:
    return shared_store(directory if directory is not None else _environment.checkpoint_directory())


def _resolver(directory: str | os.PathLike[str] | None) -> Callable[[], CacheStore]:
    if directory is not None:
        path = os.path.abspath(directory)
        return lambda: shared_store(path)
    return lambda: shared_store(_environment.checkpoint_directory())
