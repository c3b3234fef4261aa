"""Claims: one process computes a cache key at a time, across the runs of a project.

Four `latent run`s of one project started together would each compute every row their caches
miss. A claim makes the first caller that misses a key its only computer; the others wait for
its record and serve it as a cache hit. A claim is a file ``<results>.claims/<key>`` (beside the
result directory: ``.latent/results.claims/`` by default) created exclusively, naming its
process (host, pid, start time), and removed once the result is stored or the call has failed.
A claim whose process is gone (killed) is taken over; one from another host (shared storage)
is trusted for `FOREIGN_CLAIM_S`. Only local result directories have claims: an object store
has no exclusive create, and runs there compute as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import psutil

CLAIM_SUFFIX = ".claims"
FOREIGN_CLAIM_S = 3600.0  # a claim of another host is trusted this long (its pid can't be checked)
_POLL_FIRST_S, _POLL_MAX_S = 0.02, 0.5


_me: dict[int, str] = {}  # pid -> this process's identity (a forked worker has its own)


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

    def hold(self, key: str) -> bool:
        """Claim `key` for this process; False while a live process (this one included:
        another thread) holds it. A dead process's claim is taken over."""
        path = self.directory / key
        for _ in range(2):
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileNotFoundError:
                try:
                    self.directory.mkdir(parents=True, exist_ok=True)
                except OSError:
                    return True  # a read-only or full store: the call computes (and says so)
                continue
            except FileExistsError:
                if self._alive(path):
                    return False
                self._take_over(path)
                continue
            except OSError:
                return True  # claims are an optimisation: a store we cannot claim in computes
            with os.fdopen(fd, "w") as f:
                f.write(_this_process())
            return True
        return False

    def release(self, key: str) -> None:
        with contextlib.suppress(OSError):
            (self.directory / key).unlink()

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
