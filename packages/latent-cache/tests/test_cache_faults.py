"""Resource faults: a full disk, a file size limit, an unusable index, four processes at once.

Each fault is real: a child interpreter runs under a small ``RLIMIT_FSIZE`` (Python ignores
SIGXFSZ, so writes past the limit fail with EFBIG, as they would on a full disk), and several
processes share one store. Read-only directories and a full tmpfs are driven through `latent run`
in tests/reliability/test_reliability_resources.py.
"""

from __future__ import annotations

import errno
import pickle
import sqlite3
import warnings
from pathlib import Path

import pytest

from latent.cache import (
    MISSING,
    CacheEntryWarning,
    CacheStore,
    CacheWriteError,
    _ratelimit,
    fingerprint_file,
)

LIMITED = """
import resource, sys
from latent.cache import CacheWriteError, checkpoint

@checkpoint(directory=sys.argv[1])
def step(i):
    return "x" * (2_000_000 if i == 3 else 10)

resource.setrlimit(resource.RLIMIT_FSIZE, (1_000_000, 1_000_000))
done = []
try:
    for i in range(6):
        step(i)
        done.append(i)
except CacheWriteError as exc:
    print("DONE", done)
    print("ERRNO", exc.errno)
    print("ERROR", exc)
"""


def test_checkpoint_past_a_file_size_limit_raises_one_clear_error(
    tmp_path: Path, run_python, dev: None
) -> None:
    directory = tmp_path / "ckpt"
    out = run_python(LIMITED, str(directory)).stdout
    assert "DONE [0, 1, 2]" in out  # the rows before the fault were stored and returned
    assert f"ERRNO {errno.EFBIG}" in out
    error = next(line for line in out.splitlines() if line.startswith("ERROR"))
    assert f"Cannot write to the cache directory {directory}" in error
    assert "file size limit" in error and "[paths] latent_dir" in error
    # Nothing half-written: the store still reads, and holds exactly the finished rows.
    store = CacheStore(directory)
    assert len(store.entries()) == 3
    assert not [p for p in directory.rglob("*.val") if p.stat().st_size == 0]


def test_sqlite_and_os_faults_are_recognised(tmp_path: Path) -> None:
    from latent.cache._faults import write_fault

    full = write_fault(sqlite3.OperationalError("database or disk is full"), tmp_path)
    assert full is not None and "full" in full.reason and full.path == str(tmp_path)
    readonly = write_fault(OSError(errno.EROFS, "Read-only file system"), tmp_path)
    assert readonly is not None and readonly.reason == "the filesystem is read-only"
    assert write_fault(sqlite3.OperationalError("no such table: Cache"), tmp_path) is None
    assert write_fault(None, tmp_path) is None  # a writable directory: not a fault
    copy = pickle.loads(pickle.dumps(readonly))
    assert isinstance(copy, CacheWriteError) and str(copy) == str(readonly)


def test_an_unusable_fingerprint_index_falls_back_to_reading_with_one_warning(
    tmp_path: Path,
) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "fingerprints").write_text("not a directory")
    files = [tmp_path / f"f{i}.txt" for i in range(3)]
    for i, path in enumerate(files):
        path.write_text(f"content {i}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        digests = [fingerprint_file(path, index_dir=cache) for path in files]
        digests.append(fingerprint_file(files[0], index_dir=cache))
    assert len(set(digests)) == 3 and digests[0] == digests[3]
    shown = [w for w in caught if issubclass(w.category, CacheEntryWarning)]
    assert len(shown) == 1
    assert str(cache / "fingerprints") in str(shown[0].message)


def test_warnings_of_one_kind_are_shown_once_and_counted(tmp_path: Path) -> None:
    store = CacheStore(tmp_path)
    for i in range(4):
        store.set(f"k{i}", list(range(100_000)))  # big enough to live in its own file
    for path in tmp_path.rglob("*.val"):
        path.write_bytes(b"\x80truncated")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert [store.get(f"k{i}") for i in range(4)] == [MISSING] * 4
    shown = [w for w in caught if issubclass(w.category, CacheEntryWarning)]
    assert len(shown) == 1 and "counted and reported at exit" in str(shown[0].message)
    assert _ratelimit.suppressed()[f"unreadable:{tmp_path}"] == 3
    _ratelimit._counts.pop(f"unreadable:{tmp_path}")  # keep the session's exit report quiet


WORKER = """
import os, sys, threading
from latent.cache import CacheStore, fingerprint_file, shared_store

root, me = sys.argv[1], sys.argv[2]
errors = []

def work(t):
    data = os.path.join(root, f"in{me}-{t}.txt")
    with open(data, "w") as fh:
        fh.write("x" * 100)
    store = shared_store(os.path.join(root, "store"))
    for i in range(25):
        try:
            store.set(f"{me}-{t}-{i}", "v" * (i * 2000))
            assert store.get(f"{me}-{t}-{i}") == "v" * (i * 2000)
            CacheStore(os.path.join(root, "tasks"), default_expire=None).set(f"{me}{t}{i}", i)
            fingerprint_file(data, index_dir=os.path.join(root, "cache"))
        except Exception as exc:
            errors.append(f"{type(exc).__name__}: {exc}")

threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print("ERRORS", errors)
"""


@pytest.mark.slow
def test_four_processes_share_one_store_without_locked_errors(tmp_path: Path, child_env) -> None:
    import subprocess
    import sys

    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(tmp_path), str(n)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=child_env(),
        )
        for n in range(4)
    ]
    outputs = [proc.communicate(timeout=300) for proc in procs]
    for out, err in outputs:
        assert "ERRORS []" in out, out + err
        assert "database is locked" not in err, err
    store = CacheStore(tmp_path / "store")
    assert len(store.entries()) == 4 * 4 * 25
    with sqlite3.connect(tmp_path / "store" / "cache.db") as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
