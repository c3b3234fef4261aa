"""Recognising resource faults (disk full, quota, read-only, no permission) behind cache errors.

Such a fault is not flaky: retrying it wastes the run, and the raw errors say nothing useful
(``database or disk is full``, ``unable to open database file``, ``disk I/O error``). SQLite
reports them in its own words and without a path, so when its message is ambiguous the cache
directory is probed with a tiny write of our own, whose ``OSError`` carries the real errno.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import tempfile

from latent.cache.errors import CacheWriteError

_REASONS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EROFS: "the filesystem is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EFBIG: "the file size limit is reached (ulimit -f)",
}
_SQLITE_FULL = "database or disk is full"
_SQLITE_READONLY = ("readonly database", "read-only database")
_SQLITE_AMBIGUOUS = ("unable to open database file", "disk i/o error", "database is locked")


def write_fault(
    exc: BaseException | None, directory: str | os.PathLike[str]
) -> CacheWriteError | None:
    """A :class:`CacheWriteError` for ``directory`` if ``exc`` comes from a resource fault.

    ``exc=None`` (a write that gave up without saying why) probes the directory.
    """
    path = os.fspath(directory)
    if isinstance(exc, CacheWriteError):
        return exc
    if isinstance(exc, OSError) and exc.errno in _REASONS:
        return CacheWriteError(path, _REASONS[exc.errno], exc.errno, str(exc))
    if isinstance(exc, sqlite3.Error):
        text = str(exc).lower()
        if _SQLITE_FULL in text:
            return _probe(path) or CacheWriteError(path, _full_reason(), errno.ENOSPC, str(exc))
        if any(words in text for words in _SQLITE_READONLY):
            probed = _probe(path)
            return probed or CacheWriteError(path, "the database file is read-only", None, str(exc))
        if any(words in text for words in _SQLITE_AMBIGUOUS):
            return _probe(path)
        return None
    if exc is None or isinstance(exc, OSError):
        return _probe(path)
    return None


def _full_reason() -> str:
    """SQLite says "full" for a file size limit too: name both when a limit is set."""
    try:
        import resource

        soft, _hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    except (ImportError, OSError, ValueError):
        return _REASONS[errno.ENOSPC]
    if soft == resource.RLIM_INFINITY:
        return _REASONS[errno.ENOSPC]
    return f"the disk is full or the file size limit ({soft} bytes, ulimit -f) is reached"


def _probe(directory: str) -> CacheWriteError | None:
    """Write (and remove) a small file in ``directory``; the errno of a failure says why."""
    target = directory
    while not os.path.isdir(target):  # a directory not made yet: its first existing parent
        parent = os.path.dirname(target)
        if parent == target:
            return None
        target = parent
    try:
        fd, name = tempfile.mkstemp(dir=target, prefix=".latent-probe-", suffix=".tmp")
    except OSError as exc:
        return _from_oserror(directory, exc)
    try:
        os.write(fd, b"\0" * 4096)
        os.fsync(fd)
    except OSError as exc:
        return _from_oserror(directory, exc)
    finally:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(name)
    return None


def _from_oserror(directory: str, exc: OSError) -> CacheWriteError | None:
    if exc.errno not in _REASONS:
        return None
    # The OS's words, not str(exc): that would name our probe file, not anything of the user's.
    return CacheWriteError(directory, _REASONS[exc.errno], exc.errno, os.strerror(exc.errno))
