"""Where dataset bytes live: local files directly, URLs (``s3://``, ``memory://``) via fsspec.

Local paths never touch fsspec, so latent-config works without it installed. Every write goes
to a temporary file next to the target and is renamed into place, so a crash mid-save never
leaves half a dataset behind. A process killed mid-save does leave its temporary file; the
first write of a later process into that directory removes such leftovers: files named
``.latent-tmp-<pid>-…tmp`` older than that process whose writer is no longer running.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import IO, Any

from latent.config.errors import DatasetError

_TMP_PREFIX = ".latent-tmp-"
_STARTED = time.time()  # temp files older than this process were left by an earlier one
_STALE_ANYWAY_S = 24 * 3600  # past this age a temp file is stale even if its pid was reused
_swept: set[str] = set()
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]+://")
_FAULTS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EROFS: "the filesystem is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EFBIG: "the file size limit is reached (ulimit -f)",
}


def write_fault(exc: BaseException) -> str | None:
    """In words, the resource fault (disk full, quota, read-only, no access) behind ``exc``.

    Looks along the chain of causes too: pandas and pyarrow wrap the ``OSError`` they got.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in _FAULTS:
            return _FAULTS[current.errno]
        current = current.__cause__ or current.__context__
    return None


def is_url(path: str) -> bool:
    """True for ``scheme://...`` (two or more scheme letters, so ``C:\\`` is not a URL)."""
    return bool(_URL.match(path))


def filesystem(url: str, fs_args: Mapping[str, Any]) -> tuple[Any, str]:
    """Return ``(fsspec filesystem, path within it)`` for a URL; import fsspec lazily."""
    try:
        import fsspec
    except ImportError as exc:
        raise DatasetError(
            f"{url!r} is a URL, which needs fsspec: pip install 'latent-config[fsspec]' "
            "(plus the filesystem's package, e.g. s3fs for s3://)."
        ) from exc
    fs, path = fsspec.core.url_to_fs(url, **dict(fs_args))
    return fs, path


def exists(path: str, fs_args: Mapping[str, Any]) -> bool:
    """Whether a file or directory is present at ``path``."""
    if not is_url(path):
        return os.path.exists(path)
    fs, inner = filesystem(path, fs_args)
    return bool(fs.exists(inner))


@contextlib.contextmanager
def open_read(path: str, fs_args: Mapping[str, Any]) -> Iterator[IO[bytes]]:
    """Open ``path`` for binary reading."""
    if not is_url(path):
        with open(path, "rb") as fh:
            yield fh
        return
    fs, inner = filesystem(path, fs_args)
    with fs.open(inner, "rb") as fh:
        yield fh


def atomic_write(path: str, write: Callable[[IO[bytes]], None], fs_args: Mapping[str, Any]) -> None:
    """Call ``write`` with a binary temp file beside ``path``, then rename it onto ``path``."""
    if is_url(path):
        _atomic_write_fs(path, write, fs_args)
        return
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    remove_stale_temp_files(directory)
    fd, tmp = _create_beside(path)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _create_beside(path: str) -> tuple[int, str]:
    """Open a new temp file next to `path` with the permissions a plain ``open(path, "wb")`` gives.

    ``mkstemp`` creates files 0600 whatever the umask, so every dataset would end up unreadable
    to the user's group. A random name opened with O_EXCL is as safe, and the OS applies the
    umask; a file being replaced keeps its own mode, as it would when written in place.
    """
    name = f"{_TMP_PREFIX}{os.getpid()}-{os.path.basename(path)}.{uuid.uuid4().hex}.tmp"
    tmp = os.path.join(os.path.dirname(path) or ".", name)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    with contextlib.suppress(FileNotFoundError):
        os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode))
    return fd, tmp


def remove_stale_temp_files(directory: str) -> int:
    """Delete temp files of interrupted saves in ``directory`` (once per process); the count.

    Stale means: named by `atomic_write`, last modified before this process started, and its
    writer (the pid in the name) no longer running, or older than a day. A save in progress,
    here or in another live process, is never touched.
    """
    key = os.path.abspath(directory)
    if key in _swept:
        return 0
    _swept.add(key)
    removed = 0
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return 0
    now = time.time()
    for entry in entries:
        if not (entry.name.startswith(_TMP_PREFIX) and entry.name.endswith(".tmp")):
            continue
        try:
            mtime = entry.stat(follow_symlinks=False).st_mtime
        except OSError:
            continue
        if mtime >= _STARTED:
            continue
        if _writer_alive(entry.name) and now - mtime < _STALE_ANYWAY_S:
            continue
        with contextlib.suppress(OSError):
            os.unlink(entry.path)
            removed += 1
    return removed


def _writer_alive(name: str) -> bool:
    pid_text = name[len(_TMP_PREFIX) :].partition("-")[0]
    if not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def _atomic_write_fs(
    url: str, write: Callable[[IO[bytes]], None], fs_args: Mapping[str, Any]
) -> None:
    fs, inner = filesystem(url, fs_args)
    parent, _, name = inner.rpartition("/")
    tmp = (
        f"{parent}/.{name}.{uuid.uuid4().hex}.tmp" if parent else f".{name}.{uuid.uuid4().hex}.tmp"
    )
    if parent:
        fs.makedirs(parent, exist_ok=True)
    try:
        with fs.open(tmp, "wb") as fh:
            write(fh)
        # On object stores this is copy+delete, not atomic, but readers still never see a
        # partially written object under the final name.
        fs.mv(tmp, inner)
    except BaseException:
        with contextlib.suppress(Exception):
            fs.rm(tmp)
        raise
