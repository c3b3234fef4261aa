"""Result records: how a cached task result is written, found and trusted.

One file per key in the project's result storage (a local directory or an fsspec URL)::

    LATENT-RESULT 1\\n
    {"key": ..., "task": ..., "expires": ..., "size": ..., "digest": ..., ...}\\n
    <cloudpickle payload>

The header names the key the record was written for, and the payload's size and digest, so a
record is verified on every read: a truncated, swapped or half-written file is a miss with a
warning, never a served value. Local writes go to a temporary file in the same directory and
are renamed into place (never a partial or 0-byte record, even on a full disk), keeping the
user's umask; object stores write a whole object at once. A disk that is full or read-only is
a `latent.cache.CacheWriteError` naming the directory and what to change. `latent cache
list/clear` read the headers, so the records themselves are the index.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import xxhash

from latent.cache import write_fault

MAGIC = b"LATENT-RESULT 1\n"
TEMP_PREFIX = ".latent-tmp-"


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_made_dirs: set[str] = set()  # local record directories this process made or found
_FILE_MODE = 0o666 & ~_current_umask()  # read once: os.umask is process-wide and not atomic


class _Miss:
    def __repr__(self) -> str:
        return "MISS"

    def __reduce__(self) -> str:
        return "MISS"  # unpickles as this module's MISS, so `is MISS` holds across processes


MISS: Any = _Miss()  # what `ResultStore.read` returns for no usable record


@dataclass(frozen=True)
class Header:
    """What a record says about itself (everything but the value)."""

    key: str
    task: str | None = None
    flow: str | None = None
    created: float = 0.0
    expires: float | None = None
    size: int = 0
    digest: str = ""
    output: dict[str, str] | None = None  # output dataset name -> fingerprint written with it
    ingredients: dict[str, str] = field(default_factory=dict)

    def expired(self, now: float) -> bool:
        return self.expires is not None and self.expires <= now


class RecordError(ValueError):
    """A record that cannot be trusted (damaged, truncated, written for another key)."""


def encode(header: Header, payload: bytes) -> bytes:
    fields = {k: v for k, v in header.__dict__.items() if v not in (None, {}, "")}
    fields["size"] = len(payload)
    fields["digest"] = xxhash.xxh3_128_hexdigest(payload)
    return MAGIC + json.dumps(fields, separators=(",", ":")).encode() + b"\n" + payload


def decode_header(line: bytes) -> Header:
    try:
        fields = json.loads(line)
        return Header(**fields)
    except (ValueError, TypeError) as exc:
        raise RecordError(f"unreadable header ({exc})") from None


def decode(data: bytes, key: str) -> tuple[Header, bytes]:
    """Header and payload of a record, verified against the key it was read for."""
    if not data.startswith(MAGIC):
        raise RecordError("not a Latent result record")
    end = data.find(b"\n", len(MAGIC))
    if end < 0:
        raise RecordError("truncated header")
    header = decode_header(data[len(MAGIC) : end])
    payload = data[end + 1 :]
    if header.key != key:
        raise RecordError(f"written for key {header.key}, not {key}")
    if len(payload) != header.size or xxhash.xxh3_128_hexdigest(payload) != header.digest:
        raise RecordError(f"payload of {len(payload)} bytes does not match its checksum")
    return header, payload


class ResultStore:
    """Records under one location; `location` is a directory or an fsspec URL."""

    def __init__(self, location: str) -> None:
        self.location = location
        self._remote = "://" in location and not location.startswith("file://")
        self._dir = None if self._remote else Path(location.removeprefix("file://"))

    @property
    def local_dir(self) -> Path | None:
        """The directory of a local store (None for an object store)."""
        return self._dir

    def has(self, key: str) -> bool:
        """Whether a local record exists under `key` (unverified: a cheap look before a read)."""
        return self._dir is not None and os.path.isfile(os.path.join(self._dir, key))

    # -- reading -------------------------------------------------------------------------------

    def read(self, key: str) -> tuple[Header, bytes] | Any:
        """(header, payload) of a live record under `key`, or `MISS` (damaged: with a warning)."""
        try:
            data = self._read_bytes(key)
        except FileNotFoundError:
            return MISS
        except OSError as exc:
            self.warn(key, f"({exc})")
            return MISS
        try:
            header, payload = decode(data, key)
        except RecordError as exc:
            self.warn(key, f"({exc})")
            return MISS
        if header.expired(time.time()):
            return MISS
        return header, payload

    def headers(self) -> Iterator[tuple[str, Header, int]]:
        """(key, header, file size) of every record here, expired or not; others are skipped."""
        for key in self._keys():
            try:
                line, size = self._read_header_line(key)
            except OSError:
                continue
            if line is None:
                continue
            try:
                yield key, decode_header(line), size
            except RecordError:
                continue

    def _keys(self) -> Iterator[str]:
        if self._dir is not None:
            if not self._dir.is_dir():
                return
            for entry in os.scandir(self._dir):
                if entry.is_file() and not entry.name.startswith(TEMP_PREFIX):
                    yield entry.name
            return
        fs, base = self._fs()
        with contextlib.suppress(FileNotFoundError):
            for path in fs.ls(base, detail=False):
                yield str(path).rstrip("/").rsplit("/", 1)[-1]

    def _read_header_line(self, key: str) -> tuple[bytes | None, int]:
        if self._dir is not None:
            path = self._dir / key
            with path.open("rb") as f:
                if f.read(len(MAGIC)) != MAGIC:
                    return None, 0
                return f.readline().rstrip(b"\n"), path.stat().st_size
        data = self._read_bytes(key)
        if not data.startswith(MAGIC):
            return None, 0
        end = data.find(b"\n", len(MAGIC))
        return data[len(MAGIC) : end], len(data)

    def _read_bytes(self, key: str) -> bytes:
        if self._dir is not None:
            return (self._dir / key).read_bytes()
        fs, base = self._fs()
        try:
            return bytes(fs.cat_file(f"{base}/{key}"))
        except KeyError:
            raise FileNotFoundError(key) from None

    # -- writing -------------------------------------------------------------------------------

    def write(self, header: Header, payload: bytes) -> None:
        """Write a record atomically (OSError, e.g. ENOSPC, leaves no file behind)."""
        data = encode(header, payload)
        if self._dir is None:
            fs, base = self._fs()
            fs.pipe_file(f"{base}/{header.key}", data)
            return
        try:
            self._write_local(self._dir, header.key, data)
        except OSError as exc:
            fault = write_fault(exc, self._dir)
            if fault is None:
                raise
            raise fault from exc

    @staticmethod
    def _write_local(directory: Path, key: str, data: bytes) -> None:
        where = str(directory)
        if where not in _made_dirs:  # a mkdir per record is a syscall per row of a map
            directory.mkdir(parents=True, exist_ok=True)
            _made_dirs.add(where)
        try:
            fd, temp = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=where)
        except FileNotFoundError:  # removed since (`latent cache clear`): made again
            directory.mkdir(parents=True, exist_ok=True)
            fd, temp = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=where)
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fchmod(fd, _FILE_MODE)
            finally:
                os.close(fd)
            os.replace(temp, os.path.join(where, key))
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise

    def delete(self, key: str) -> bool:
        if self._dir is not None:
            try:
                (self._dir / key).unlink()
            except FileNotFoundError:
                return False
            return True
        fs, base = self._fs()
        try:
            fs.rm_file(f"{base}/{key}")
        except FileNotFoundError:
            return False
        return True

    def _fs(self) -> tuple[Any, str]:
        import fsspec

        fs, base = fsspec.core.url_to_fs(self.location)
        return fs, str(base).rstrip("/")

    def warn(self, key: str, problem: str) -> None:
        """Say that the record under `key` is ignored, and why."""
        warnings.warn(
            f"Cached result '{key}' under {self.location} could not be read {problem}; the "
            "task will run again and replace it.",
            RuntimeWarning,
            stacklevel=4,
        )


def header_fields(header: Header) -> Mapping[str, Any]:
    """The header as a plain mapping (for `latent cache` tables and explanations)."""
    return dict(header.__dict__)
