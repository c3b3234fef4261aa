"""``@cached``: persistent memoization for plain Python functions and methods.

Unlike ``functools.lru_cache`` the results survive the process, and unlike ``joblib.Memory`` the
key follows the code: editing the function, or a helper in its module that it calls, is a miss.
Arguments are hashed with :func:`stable_hash`; for a method that includes ``self``, so the
instance must be hashable stably: make the class a dataclass or a pydantic model, or
:func:`register_hasher` for it. ``f(1)`` and ``f(x=1)`` are keyed separately (binding every call
to the signature would cost more than the rare extra miss).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar, overload

from latent.cache._memo import memoize
from latent.cache.store import CacheStore, shared_store

__all__ = ["cached"]

F = TypeVar("F", bound=Callable[..., Any])
StoreArg = CacheStore | str | os.PathLike[str] | None


@overload
def cached(fn: F) -> F: ...


@overload
def cached(
    fn: None = None,
    *,
    expire: timedelta | float | None = ...,
    store: StoreArg = ...,
) -> Callable[[F], F]: ...


def cached(
    fn: Callable[..., Any] | None = None,
    *,
    expire: timedelta | float | None = timedelta(days=7),
    store: StoreArg = None,
) -> Any:
    """Memoize ``fn`` on disk, keyed by its code and the stable hash of its arguments.

    Use as ``@cached`` or ``@cached(expire=timedelta(hours=1), store="path/or/CacheStore")``.
    The default store is ``./.latent/cache`` (resolved at call time). The wrapper adds
    ``.cache_key(*args, **kwargs)`` and ``.cache_clear()``. Thread-safe; exceptions are not cached.
    """

    def decorate(func: Callable[..., Any]) -> Any:
        return memoize(func, store=_resolver(store), expire=expire, kind="cached")

    return decorate(fn) if fn is not None else decorate


def _resolver(store: StoreArg) -> Callable[[], CacheStore]:
    if isinstance(store, CacheStore):
        return lambda: store
    if store is not None:
        path = os.path.abspath(store)
        return lambda: shared_store(path)
    return shared_store
