"""Content fingerprints of files and directories, with a stat index so unchanged files are not read.

A fingerprint is the xxh3-128 digest of a file's bytes (xxh3 reads at memory speed; a
cryptographic hash would make a 1 GiB dataset cost seconds on every run). A small index under the
cache directory remembers ``(size, mtime_ns, ctime_ns, inode, device) -> digest``, so a file
whose stat has not changed is not read again, in this process or the next. ``ctime`` is in the
key because no user-space call can set it: an edit whose mtime is put back (``touch -d``,
``os.utime``, ``cp -p``, an archive restore) still changes it. A file modified or changed in the
last two seconds is not indexed: on filesystems with coarse timestamps a second write within the
same tick would keep both times, and the index would then return a stale digest.

The index is an accelerator: if it cannot be opened or written (a read-only ``.latent/``, a full
disk), files are simply read every time, with one warning per process saying where and why.

What remains: a filesystem that does not keep ``ctime`` (some network mounts and FUSE
filesystems report it as the mtime or as 0) falls back to ``(size, mtime)``, so an edit there
that keeps the size and restores the mtime goes unseen until the file changes again.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import diskcache
import xxhash

from latent.cache._faults import write_fault
from latent.cache._ratelimit import warn_limited
from latent.cache.errors import CacheEntryWarning
from latent.cache.store import DEFAULT_DIRECTORY, open_sqlite_cache

__all__ = ["fingerprint_file", "fingerprint_paths"]

_CHUNK = 8 * 1024 * 1024
_RACY_NS = 2_000_000_000
_INDEXES: dict[str, diskcache.Cache | None] = {}  # None: unusable here, files are read
_LOCK = threading.Lock()


def fingerprint_file(
    path: str | os.PathLike[str], *, index_dir: str | os.PathLike[str] | None = None
) -> str:
    """Return the 32-character hex content digest of one file, reading it only if it changed.

    ``index_dir`` is the cache directory whose ``fingerprints/`` index is used (default
    ``./.latent/cache``). Raises ``FileNotFoundError`` naming the path if it does not exist.
    """
    full = os.path.abspath(path)
    st = _stat(full)
    if os.path.isdir(full):
        raise IsADirectoryError(
            errno.EISDIR,
            f"Cannot fingerprint {full} as a file: it is a directory; use fingerprint_paths([...])",
            full,
        )
    stamp = _stamp(st)
    index = _index(index_dir)
    known = _lookup(index, full)
    if isinstance(known, tuple) and len(known) == len(stamp) + 1 and known[:-1] == stamp:
        return str(known[-1])
    digest = _read_digest(full)
    unchanged = _stamp(os.stat(full)) == stamp
    settled = time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) > _RACY_NS
    if index is not None and unchanged and settled:
        _remember(index, full, (*stamp, digest))
    return digest


def _stamp(st: os.stat_result) -> tuple[int, ...]:
    """What must be unchanged for a stored digest to stand: ctime cannot be set by a user."""
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)


def fingerprint_paths(
    paths: Iterable[str | os.PathLike[str]], *, index_dir: str | os.PathLike[str] | None = None
) -> str:
    """One digest for several files and directories, in the order given.

    A directory (e.g. a partitioned parquet dataset) contributes each file below it, in sorted
    relative-path order, with that relative path; a file contributes only its content, so
    renaming an input file does not change the digest. A missing path raises
    ``FileNotFoundError`` naming it.
    """
    h = xxhash.xxh3_128()
    for path in paths:
        full = os.path.abspath(path)
        _stat(full)
        if not os.path.isdir(full):
            h.update(b"F" + fingerprint_file(full, index_dir=index_dir).encode())
            continue
        files = _files_below(full)
        h.update(b"D%d:" % len(files))
        for rel in files:
            name = rel.encode("utf-8", "surrogateescape")
            h.update(b"%d:" % len(name) + name)
            h.update(fingerprint_file(os.path.join(full, rel), index_dir=index_dir).encode())
    return h.hexdigest()


def _stat(full: str) -> os.stat_result:
    try:
        return os.stat(full)
    except FileNotFoundError:
        raise FileNotFoundError(
            errno.ENOENT,
            f"Cannot fingerprint {full}: no such file or directory. Check the dataset path "
            f"(relative paths are resolved from {os.getcwd()})",
            full,
        ) from None


def _files_below(directory: str) -> list[str]:
    found = []
    for root, _dirs, names in os.walk(directory):
        for name in names:
            found.append(Path(os.path.relpath(os.path.join(root, name), directory)).as_posix())
    found.sort()
    return found


def _read_digest(full: str) -> str:
    h = xxhash.xxh3_128()
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    with open(full, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()


def _index(index_dir: str | os.PathLike[str] | None) -> diskcache.Cache | None:
    base = os.path.abspath(index_dir if index_dir is not None else DEFAULT_DIRECTORY)
    path = os.path.join(base, "fingerprints")
    if path in _INDEXES:
        return _INDEXES[path]
    with _LOCK:
        if path not in _INDEXES:
            try:
                _INDEXES[path] = open_sqlite_cache(path)
            except (OSError, sqlite3.OperationalError) as exc:
                _INDEXES[path] = None
                _index_unusable(path, exc)
        return _INDEXES[path]


def _lookup(index: diskcache.Cache | None, full: str) -> Any:
    if index is None:
        return None
    try:
        return index.get(full, None)
    except (OSError, sqlite3.Error):
        return None  # an unreadable index entry: read the file instead


def _remember(index: diskcache.Cache, full: str, entry: tuple[Any, ...]) -> None:
    try:
        index.set(full, entry)
    except (OSError, sqlite3.Error, diskcache.Timeout) as exc:
        _index_unusable(index.directory, exc)


def _index_unusable(path: str, exc: BaseException) -> None:
    fault = write_fault(exc, path)
    why = fault.reason if fault is not None else f"{type(exc).__name__}: {exc}"
    warn_limited(
        f"fingerprint-index:{path}",
        f"The file fingerprint index {path} cannot be used ({why}); input files are read "
        f"in full on every run until it can. Free space or make the directory writable, or "
        f"move Latent's state with [paths] latent_dir in config/latent.toml.",
        CacheEntryWarning,
        stacklevel=4,
    )
