"""Claims: one process computes a cache key at a time, across the runs of a project.

Four `latent run`s of one project started together would each compute every row their caches
miss. A claim makes the first caller that misses a key its only computer; the others wait for
its record and serve it as a cache hit. A claim is a file ``<results>.claims/<key>`` (beside the
result directory: ``.latent/results.claims/`` by default) created exclusively, naming its
process (host, pid, start time), and removed once the result is stored or the call has failed.
A claim whose process is gone (killed) is taken over; one from another host (shared storage)
is trusted for `FOREIGN_CLAIM_S`. Only local result directories have claims: an object store
has no exclusive create, and runs there compute as before.

A claim is a hard link to its process's token (``.holder-<host>-<pid>`` in the same directory,
holding the same identity), not a file of its own: taking and releasing it then allocates and
frees no inode. Per row of a 10,000-row map that matters: on ext4 a file created soon after
many were deleted costs up to 0.6 ms of kernel time (the allocator steps over recently freed
inodes), and a claim per row kept freeing them. Where hard links are not supported, a claim
is a file again. A token lives as long as its process; a dead process's token is removed by
the next process that makes one there.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import errno
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil

CLAIM_SUFFIX = ".claims"
TOKEN_PREFIX = ".holder-"
FOREIGN_CLAIM_S = 3600.0  # a claim of another host is trusted this long (its pid can't be checked)
_POLL_FIRST_S, _POLL_MAX_S = 0.02, 0.5


_me: dict[int, str] = {}  # pid -> this process's identity (a forked worker has its own)
# (pid, claims directory) -> this process's token there, or None where links do not work
_tokens: dict[tuple[int, str], str | None] = {}
_tokens_lock = threading.Lock()
_exit_hook: list[object] = []
# errors of a filesystem (or a token) that cannot take one more hard link
_NO_LINK = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV, errno.EMLINK, errno.EACCES}


def _this_process() -> str:
    pid = os.getpid()
    found = _me.get(pid)
    if found is None:
        started = psutil.Process(pid).create_time()
        found = _me[pid] = f"{socket.gethostname()} {pid} {started:.3f}"
    return found


class Claims:
    """The claims of one result directory (see the module docstring)."""

    def __init__(self, results: Path) -> None:
        # beside the records, not among them: tools that list the records see only records
        self.directory = results.with_name(results.name + CLAIM_SUFFIX)
        self._dir = str(self.directory)

    def hold(self, key: str) -> bool:
        """Claim `key` for this process; False while a live process (this one included:
        another thread) holds it. A dead process's claim is taken over."""
        path = os.path.join(self._dir, key)
        for _ in range(2):
            try:
                self._create(path)
            except FileNotFoundError:  # no directory or token yet (or cleared): make them
                _tokens.pop((os.getpid(), self._dir), None)
                try:
                    os.makedirs(self._dir, exist_ok=True)
                except OSError:
                    return True  # a read-only or full store: the call computes (and says so)
                continue
            except FileExistsError:
                if self._alive(self.directory / key):
                    return False
                self._take_over(self.directory / key)
                continue
            except OSError:
                return True  # claims are an optimisation: a store we cannot claim in computes
            return True
        return False

    def _create(self, path: str) -> None:
        """The claim at `path`: a link to this process's token, else a file of its own."""
        token = self._token()
        if token is not None:
            try:
                os.link(token, path)  # FileNotFoundError: `hold` remakes directory and token
                return
            except OSError as exc:
                if exc.errno not in _NO_LINK:
                    raise
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, _this_process().encode())
        finally:
            os.close(fd)

    def _token(self) -> str | None:
        """This process's token in the directory (made on first use), or None without links."""
        where = (os.getpid(), self._dir)
        if where in _tokens:
            return _tokens[where]
        with _tokens_lock:
            if where in _tokens:
                return _tokens[where]
            token = os.path.join(self._dir, f"{TOKEN_PREFIX}{socket.gethostname()}-{where[0]}")
            _tokens[where] = token if self._make_token(token) else None
            return _tokens[where]

    def _make_token(self, token: str) -> bool:
        """Write this process's token; False (and no token) where hard links fail."""
        temp = f"{token}.tmp"
        with open(temp, "w") as f:  # FileNotFoundError: no directory yet (`hold` makes it)
            f.write(_this_process())
        os.replace(temp, token)  # a token of a dead process with this pid is replaced
        probe = f"{token}.link"
        try:
            os.link(token, probe)
            os.unlink(probe)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(token)
            return False
        if not _exit_hook:  # once per interpreter (a forked child inherits it)
            _exit_hook.append(atexit.register(_remove_tokens))
        self._sweep(keep=token)
        return True

    def _sweep(self, keep: str) -> None:
        """Remove the tokens of processes that are gone (their claims are taken over alone)."""
        with contextlib.suppress(OSError), os.scandir(self._dir) as entries:
            for entry in entries:
                name = entry.name
                if not name.startswith(TOKEN_PREFIX) or name.endswith((".tmp", ".link")):
                    continue  # not a token, or one being made
                if entry.path != keep and not self._alive(Path(entry.path)):
                    with contextlib.suppress(OSError):
                        os.unlink(entry.path)

    def release(self, key: str) -> None:
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(self._dir, key))

    def waiting(self, key: str) -> Iterator[float]:
        """Pauses (seconds) to sleep while `key`'s claim is held by a live process."""
        path, pause = self.directory / key, _POLL_FIRST_S
        while path.exists() and self._alive(path):
            yield pause
            pause = min(pause * 2, _POLL_MAX_S)

    def wait(self, key: str) -> None:
        for pause in self.waiting(key):
            time.sleep(pause)

    async def await_release(self, key: str) -> None:
        for pause in self.waiting(key):
            await asyncio.sleep(pause)

    @staticmethod
    def _alive(path: Path) -> bool:
        try:
            holder = path.read_text().split()
            age = time.time() - path.stat().st_mtime
        except (OSError, UnicodeDecodeError):
            return False  # gone, or being written right now: the next look decides
        if len(holder) != 3:
            return age < 5  # a claim being written
        host, pid, started = holder
        if host != socket.gethostname():
            return age < FOREIGN_CLAIM_S
        if f"{host} {pid} {started}" == _this_process():
            return True
        try:
            return abs(psutil.Process(int(pid)).create_time() - float(started)) < 0.01
        except (psutil.Error, ValueError):
            return False

    @staticmethod
    def _take_over(path: Path) -> None:
        """Remove a dead process's claim, renamed away first so that two processes taking it
        over at once remove it once (at worst both then compute: wasted work, never a wrong
        value)."""
        moved = path.with_name(f"{path.name}.dead-{os.getpid()}")
        try:
            os.replace(path, moved)
        except OSError:
            return
        with contextlib.suppress(OSError):
            moved.unlink()


def _remove_tokens() -> None:
    """At exit: this process's tokens (a forked worker's are its own, and stay for a sweep)."""
    pid = os.getpid()
    for (owner, _directory), token in list(_tokens.items()):
        if owner == pid and token is not None:
            with contextlib.suppress(OSError):
                os.unlink(token)
