"""A disk cache with per-entry expiry that never evicts and never drops a write.

Built on ``diskcache.Cache`` (SQLite + files), with settings chosen so a stored result cannot be
lost: no size limit and no culling (diskcache's defaults evict past 1 GiB), SQLite in WAL mode
(readers never wait for a writer) with a 60 s busy timeout, and bounded retries instead of giving
up (``FanoutCache`` silently drops a write after 10 ms of contention) or retrying forever
(diskcache's ``retry=True`` loops on any error, a read-only database included). A write that
fails because the disk is full, a quota is exceeded or the directory is read-only or not ours
raises :class:`CacheWriteError` naming the directory: retrying would not help. Values are
pickled by the store itself, so an entry that no longer unpickles (a truncated file, a renamed
class) is detected, reported with a warning (once per process, with a count at exit), removed,
and treated as a miss. Beside each value the store keeps a small record of who made it, when,
and from which key ingredients, so a user can ask why something hit or missed.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import sqlite3
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import diskcache

from latent.cache._faults import write_fault
from latent.cache._ratelimit import warn_limited
from latent.cache.errors import CacheEntryWarning, CacheWriteError, UncacheableValueError

__all__ = ["MISSING", "CacheEntry", "CacheStore", "shared_store"]

DEFAULT_DIRECTORY = Path(".latent") / "cache"
# Provenance records live under the key (_META, key): a tuple never clashes with a str key.
_META = "latent-meta"
_ABSENT = object()
_BUSY_BUDGET_S = 300.0  # total wait for a database other processes keep busy, then a clear error
_T = TypeVar("_T")


class _Missing:
    """Type of :data:`MISSING`; a distinct sentinel because ``None`` is a valid cached value."""

    _instance: _Missing | None = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


@dataclass(frozen=True)
class CacheEntry:
    """What is cached under a key: who made it, when, until when, how big, and from what."""

    key: str
    function: str | None
    created: float
    expires: float | None
    size: int
    ingredients: dict[str, str] = field(default_factory=dict)


def _seconds(expire: timedelta | float | None) -> float | None:
    if expire is None:
        return None
    if isinstance(expire, timedelta):
        return expire.total_seconds()
    return float(expire)


class CacheStore:
    """A directory of pickled values with expiry and provenance; safe across threads and processes.

    Use one instance per directory in a process (:func:`shared_store` hands it out); several
    processes may open the same directory at once. ``hits``/``misses`` in :meth:`stats` count
    this instance's lookups; entries and sizes describe the whole directory.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str] | None = None,
        *,
        default_expire: timedelta | float | None = timedelta(days=7),
    ) -> None:
        path = Path(directory) if directory is not None else Path.cwd() / DEFAULT_DIRECTORY
        self.directory: Path = path.absolute()
        self.default_expire = _seconds(default_expire)
        self._reopen_lock = threading.Lock()
        try:
            self._cache = self._open()
        except sqlite3.DatabaseError as exc:
            if not _is_damage(exc):
                raise
            self._set_aside(exc)
            self._cache = self._open()
        self._hits = 0
        self._misses = 0
        self._count_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"CacheStore({str(self.directory)!r})"

    def _open(self) -> diskcache.Cache:
        try:
            return open_sqlite_cache(self.directory)
        except (OSError, sqlite3.OperationalError) as exc:
            fault = write_fault(exc, self.directory)
            if fault is not None:
                raise fault from exc
            raise

    def _set_aside(self, exc: BaseException) -> None:
        """Move a damaged database aside (kept for inspection) and start an empty one."""
        database = self.directory / "cache.db"
        moved = database.with_name(f"cache.db.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.replace(f"{database}{suffix}", f"{moved}{suffix}")
        warnings.warn(
            f"The cache database {database} is damaged ({exc}); it was moved to {moved} and an "
            f"empty one started, so results cached there will be computed again. Delete "
            f"{moved} once you no longer need it.",
            CacheEntryWarning,
            stacklevel=4,
        )

    def _recover(self, exc: BaseException) -> bool:
        """After a SQLite error: reopen on a damaged file or a deleted directory; else False."""
        if not isinstance(exc, sqlite3.DatabaseError):
            return False
        damaged = _is_damage(exc)
        if not damaged and "unable to open database file" not in str(exc):
            return False
        with self._reopen_lock:
            with contextlib.suppress(Exception):
                self._cache.close()
            if damaged:
                self._set_aside(exc)
            else:  # the directory was deleted under us (e.g. rm -rf .latent mid-run)
                self.directory.mkdir(parents=True, exist_ok=True)
            self._cache = self._open()
        return True

    def get(self, key: str, default: object = MISSING) -> object:
        """The value stored under ``key``, or ``default`` if absent, expired or unreadable."""
        try:
            payload = self._cache.get(key, _ABSENT, retry=True)
            if payload is _ABSENT:
                self._count(hit=False)
                return default
            value = pickle.loads(payload)
        except Exception as exc:
            if self._recover(exc):
                self._count(hit=False)
                return default
            self._drop_unreadable(key, exc)
            self._count(hit=False)
            return default
        self._count(hit=True)
        return value

    def set(
        self,
        key: str,
        value: object,
        *,
        expire: timedelta | float | None = ...,  # type: ignore[assignment]
        function: str | None = None,
        ingredients: Mapping[str, str] | None = None,
    ) -> None:
        """Store ``value`` (pickled) under ``key``; ``expire=...`` means the store's default.

        Raises :class:`UncacheableValueError` if the value cannot be pickled.
        """
        try:
            payload = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            tp = type(value)
            name = f"{tp.__module__}.{tp.__qualname__}"
            raise UncacheableValueError(key, name, str(exc)) from exc
        seconds = self.default_expire if expire is ... else _seconds(expire)
        now = time.time()
        meta = {
            "function": function,
            "created": now,
            "expires": None if seconds is None else now + seconds,
            "size": len(payload),
            "ingredients": dict(ingredients or {}),
        }
        try:
            self._write(key, payload, meta, seconds)
        except CacheWriteError:
            raise
        except sqlite3.DatabaseError as exc:
            if not self._recover(exc):
                raise
            self._write(key, payload, meta, seconds)

    def _write(self, key: str, payload: bytes, meta: dict[str, Any], seconds: float | None) -> None:
        def put() -> None:
            self._cache.set(key, payload, expire=seconds)
            self._cache.set((_META, key), meta, expire=seconds)

        self._transact(put)

    def _transact(self, work: Callable[[], _T]) -> _T:
        """Run ``work`` in one write transaction: wait out busy peers (bounded), name faults."""
        deadline = time.monotonic() + _BUSY_BUDGET_S
        while True:
            try:
                with self._cache.transact(retry=False):
                    return work()
            except diskcache.Timeout:  # BEGIN IMMEDIATE failed: busy for 60 s, or unwritable
                self._raise_fault(None)
            except (OSError, sqlite3.OperationalError) as exc:
                self._raise_fault(exc)
                if "database is locked" not in str(exc):
                    raise
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"The cache database in {self.directory} stayed locked by other processes "
                    f"for {_BUSY_BUDGET_S:.0f} s. Find the process holding it (lsof "
                    f"{self.directory / 'cache.db'}) or give this run its own [paths] latent_dir."
                )

    def _raise_fault(self, exc: BaseException | None) -> None:
        fault = write_fault(exc, self.directory)
        if fault is not None:
            raise fault from exc

    def __contains__(self, key: object) -> bool:
        return key in self._cache

    def delete(self, key: str) -> bool:
        """Remove ``key``; True if it was there."""

        def remove() -> bool:
            self._cache.delete((_META, key))
            return bool(self._cache.delete(key))

        return self._transact(remove)

    def clear(self, *, function: str | None = None) -> int:
        """Remove every entry, or only those made by ``function``; return how many were removed.

        ``function`` matches the recorded qualified name exactly or by its last dotted parts, so
        ``"embed"`` and ``"mymodule.embed"`` both match ``"mymodule.embed"``.
        """
        if function is None:
            count = len(self._data_keys())
            self._retrying(lambda: self._cache.clear(retry=False))
            return count
        keys = [entry.key for entry in self.entries(function=function)]
        for key in keys:
            self.delete(key)
        return len(keys)

    def entries(self, *, function: str | None = None) -> list[CacheEntry]:
        """Live entries (oldest first), optionally only those made by ``function``."""
        found = []
        for key in self._data_keys():
            entry = self.describe(key)
            if entry is not None and (function is None or _matches(entry.function, function)):
                found.append(entry)
        found.sort(key=lambda e: e.created)
        return found

    def describe(self, key: str) -> CacheEntry | None:
        """The provenance record of ``key``, or None if absent or expired."""
        try:
            meta = self._cache.get((_META, key), None, retry=True)
        except Exception:
            return None
        if not isinstance(meta, dict):
            return None
        return CacheEntry(
            key=key,
            function=meta.get("function"),
            created=float(meta.get("created", 0.0)),
            expires=meta.get("expires"),
            size=int(meta.get("size", 0)),
            ingredients=dict(meta.get("ingredients") or {}),
        )

    def stats(self) -> dict[str, int]:
        """``entries``, ``size_bytes`` (pickled values), ``disk_bytes``, ``hits``, ``misses``."""
        entries = self.entries()
        return {
            "entries": len(entries),
            "size_bytes": sum(e.size for e in entries),
            "disk_bytes": int(self._cache.volume()),
            "hits": self._hits,
            "misses": self._misses,
        }

    def prune_expired(self) -> int:
        """Delete expired entries from disk (reads already ignore them); return how many."""
        before = len(self._data_keys())
        self._retrying(lambda: self._cache.expire(retry=False))
        return before - len(self._data_keys())

    def _retrying(self, work: Callable[[], _T]) -> _T:
        """A bulk operation with its own transactions (clear, expire), retried the same way."""
        deadline = time.monotonic() + _BUSY_BUDGET_S
        while True:
            try:
                return work()
            except diskcache.Timeout:
                self._raise_fault(None)
            except (OSError, sqlite3.OperationalError) as exc:
                self._raise_fault(exc)
                raise
            if time.monotonic() > deadline:
                raise TimeoutError(f"The cache database in {self.directory} stayed locked.")

    def close(self) -> None:
        """Close the SQLite connections (the store reopens them if used again)."""
        self._cache.close()

    def _data_keys(self) -> list[str]:
        return [k for k in self._cache.iterkeys() if isinstance(k, str)]

    def _count(self, *, hit: bool) -> None:
        with self._count_lock:
            if hit:
                self._hits += 1
            else:
                self._misses += 1

    def _drop_unreadable(self, key: str, exc: BaseException) -> None:
        warn_limited(
            f"unreadable:{self.directory}",
            f"Cache entry {key!r} in {self.directory} could not be read back "
            f"({type(exc).__name__}: {exc}); it was removed and will be recomputed.",
            CacheEntryWarning,
            stacklevel=3,
        )
        with contextlib.suppress(Exception):  # a broken file must not turn a miss into a crash
            self.delete(key)


def _is_damage(exc: BaseException) -> bool:
    """A damaged database file, as opposed to a busy or locked one (which retries handle)."""
    text = str(exc).lower()
    return (
        not isinstance(exc, sqlite3.OperationalError)
        or "malformed" in text
        or ("not a database" in text)
    )


def _matches(recorded: str | None, wanted: str) -> bool:
    if recorded is None:
        return False
    return recorded == wanted or recorded.endswith("." + wanted)


def open_sqlite_cache(directory: str | os.PathLike[str]) -> diskcache.Cache:
    """A diskcache ``Cache`` that never evicts or drops a write, shared safely by processes.

    No size limit, no culling, WAL (readers never block a writer, writers never block readers)
    and a 60 s SQLite busy timeout; no statistics (they turn every read into a write).
    """
    return diskcache.Cache(
        os.fspath(directory),
        size_limit=2**62,
        cull_limit=0,
        eviction_policy="none",
        timeout=60,
        statistics=False,
        sqlite_journal_mode="wal",
    )


_SHARED: dict[str, CacheStore] = {}
_SHARED_LOCK = threading.Lock()


def shared_store(directory: str | os.PathLike[str] | None = None) -> CacheStore:
    """The one :class:`CacheStore` of this process for ``directory`` (default ``./.latent/cache``).

    Double-checked locking: the common path is a dict lookup with no lock; only the first call
    for a directory takes the lock, and two threads racing there still get the same instance.
    """
    if isinstance(directory, str) and directory in _SHARED:  # already absolute and known
        return _SHARED[directory]
    path = os.path.abspath(directory if directory is not None else DEFAULT_DIRECTORY)
    store = _SHARED.get(path)
    if store is None:
        with _SHARED_LOCK:
            store = _SHARED.get(path)
            if store is None:
                store = CacheStore(path)
                _SHARED[path] = store
    return store
