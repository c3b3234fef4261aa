"""The wrapper shared by ``@cached`` and ``@checkpoint``: key, look up, run on a miss, store.

The key is the row key (qualified name + code signature + stable hash of each argument), so two
functions with the same arguments never share an entry and an edit to the function, or to a
helper it calls, is a miss. Exceptions propagate and are never stored. A result that cannot be
pickled is returned uncached with a warning (once per function) rather than lost. A store that
cannot be written (disk full, read-only) raises :class:`CacheWriteError` naming the directory.
The code signature is computed on the first call, not at decoration, so helpers defined later in
the module are seen.

An ``async def`` is wrapped in an ``async def`` (see :func:`memoize`), so callers that check
``inspect.iscoroutinefunction`` (Prefect, asyncio tooling) see a coroutine function; concurrent
awaits of the same call under ``asyncio.gather`` each look up, and the last write wins with the
same value.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from latent.cache._ratelimit import warn_limited
from latent.cache.errors import CacheEntryWarning, UncacheableValueError
from latent.cache.keys import row_key_and_ingredients
from latent.cache.signature import code_signature, qualified_name
from latent.cache.store import MISSING, CacheStore

StoreResolver = Callable[[], CacheStore]


class Memoized:
    """A function whose results persist in a :class:`CacheStore`, keyed by code and arguments."""

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        store: StoreResolver,
        expire: Any,
        kind: str,
        active: Callable[[], bool] | None = None,
    ) -> None:
        functools.update_wrapper(self, fn)
        self._fn = fn
        self._name = qualified_name(fn)
        self._store = store
        self._expire = expire
        self._kind = kind
        self._active = active
        self._signature: str | None = None

    def __repr__(self) -> str:
        return f"<{self._kind} {self._name}>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self._active is not None and not self._active():
            return self._fn(*args, **kwargs)
        key, ingredients = self._key(args, kwargs)
        store = self._store()
        value = store.get(key)
        if value is not MISSING:
            return value
        result = self._fn(*args, **kwargs)
        self._save(store, key, ingredients, result)
        return result

    async def acall(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """`__call__` for an ``async def``: the same look-up and store around an await."""
        if self._active is not None and not self._active():
            return await self._fn(*args, **kwargs)
        key, ingredients = self._key(args, kwargs)
        store = self._store()
        value = store.get(key)
        if value is not MISSING:
            return value
        result = await self._fn(*args, **kwargs)
        self._save(store, key, ingredients, result)
        return result

    def _save(self, store: CacheStore, key: str, ingredients: dict[str, str], result: Any) -> None:
        ingredients["kind"] = self._kind
        try:
            store.set(
                key, result, expire=self._expire, function=self._name, ingredients=ingredients
            )
        except UncacheableValueError as exc:
            warn_limited(f"uncacheable:{self._name}", str(exc), CacheEntryWarning, stacklevel=3)

    def __get__(self, instance: object, owner: type | None = None) -> Any:
        """Methods: bind ``self`` as the first argument (it is hashed like any argument)."""
        if instance is None:
            return self
        return BoundMemoized(self, instance)

    def cache_key(self, *args: Any, **kwargs: Any) -> str:
        """The key a call with these arguments reads and writes."""
        return self._key(args, kwargs)[0]

    def cache_clear(self) -> int:
        """Remove every stored result of this function (any arguments, any code version)."""
        store = self._store()
        removed = 0
        for entry in store.entries(function=self._name):
            if entry.function == self._name and store.delete(entry.key):
                removed += 1
        return removed

    def _key(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str, dict[str, str]]:
        signature = self._signature
        if signature is None:
            signature = self._signature = code_signature(self._fn)
        return row_key_and_ingredients(self._name, args, kwargs, signature)


class BoundMemoized:
    """A :class:`Memoized` method bound to an instance, keeping ``cache_key``/``cache_clear``."""

    __slots__ = ("__func__", "__self__")

    def __init__(self, func: Memoized, instance: object) -> None:
        self.__func__ = func
        self.__self__ = instance

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.__func__(self.__self__, *args, **kwargs)

    def cache_key(self, *args: Any, **kwargs: Any) -> str:
        return self.__func__.cache_key(self.__self__, *args, **kwargs)

    def cache_clear(self) -> int:
        return self.__func__.cache_clear()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.__func__, name)


def memoize(fn: Callable[..., Any], **options: Any) -> Any:
    """A :class:`Memoized` for ``fn``; for an ``async def``, an ``async def`` that awaits it."""
    memo = Memoized(fn, **options)
    if not inspect.iscoroutinefunction(fn):
        return memo

    async def call(*args: Any, **kwargs: Any) -> Any:
        return await memo.acall(args, kwargs)

    functools.update_wrapper(call, fn)
    call.cache_key = memo.cache_key  # type: ignore[attr-defined]
    call.cache_clear = memo.cache_clear  # type: ignore[attr-defined]
    return call
