"""File fingerprints: content digests, a stat index that skips unchanged files, directories."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from latent.cache import fingerprint_file, fingerprint_paths

OLD = 1_600_000_000_000_000_000  # an mtime well in the past: not "racy"


def write(path: Path, data: bytes, mtime_ns: int = OLD) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, ns=(mtime_ns, mtime_ns))
    return path


def test_digest_follows_content_not_name(tmp_path: Path) -> None:
    a = write(tmp_path / "a.csv", b"x,y\n1,2\n")
    b = write(tmp_path / "b.csv", b"x,y\n1,2\n")
    c = write(tmp_path / "c.csv", b"x,y\n1,3\n")
    idx = tmp_path / "cache"
    assert fingerprint_file(a, index_dir=idx) == fingerprint_file(b, index_dir=idx)
    assert fingerprint_file(a, index_dir=idx) != fingerprint_file(c, index_dir=idx)
    assert len(fingerprint_file(a, index_dir=idx)) == 32


def test_unchanged_stat_is_not_read_again_even_in_another_process(
    tmp_path: Path, run_python, monkeypatch: pytest.MonkeyPatch
) -> None:
    from latent.cache import fingerprint

    monkeypatch.setattr(fingerprint, "_RACY_NS", 0)  # the file was just made: index it anyway
    data = write(tmp_path / "data.bin", b"A" * 4096)
    idx = tmp_path / "cache"
    first = fingerprint_file(data, index_dir=idx)
    assert (idx / "fingerprints").is_dir()
    # The other process cannot read the file's bytes: only the index can answer "first".
    code = (
        "import sys; import latent.cache.fingerprint as fp\n"
        "def unread(path): raise AssertionError('read ' + path)\n"
        "fp._read_digest = unread\n"
        "print(fp.fingerprint_file(sys.argv[1], index_dir=sys.argv[2]))"
    )
    assert run_python(code, str(data), str(idx)).stdout.strip() == first
    # A changed mtime (what any real write does) is read again.
    os.utime(data, ns=(OLD + 1, OLD + 1))
    assert fingerprint_file(data, index_dir=idx) == first  # same bytes, read again


def test_edit_with_restored_mtime_and_size_is_seen(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`touch -d` back after an edit of the same size: the ctime still moves, so it is re-read."""
    from latent.cache import fingerprint

    monkeypatch.setattr(fingerprint, "_RACY_NS", 0)
    data = write(tmp_path / "data.csv", b"x,y\n1,2\n")
    idx = tmp_path / "cache"
    first = fingerprint_file(data, index_dir=idx)
    before = os.stat(data)
    with open(data, "r+b") as f:
        f.write(b"x,y\n1,3\n")
    os.utime(data, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(data)
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (
        before.st_size,
        before.st_mtime_ns,
        before.st_ino,
    )
    assert fingerprint_file(data, index_dir=idx) != first


def test_recently_modified_file_is_not_indexed(tmp_path: Path) -> None:
    data = tmp_path / "fresh.bin"
    data.write_bytes(b"one")
    idx = tmp_path / "cache"
    first = fingerprint_file(data, index_dir=idx)
    st = os.stat(data)
    data.write_bytes(b"two")
    os.utime(data, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert fingerprint_file(data, index_dir=idx) != first


def test_directories_hash_files_in_sorted_relative_order(tmp_path: Path) -> None:
    idx = tmp_path / "cache"
    one = tmp_path / "one"
    write(one / "year=2024" / "part-1.parquet", b"p1")
    write(one / "year=2023" / "part-0.parquet", b"p0")
    two = tmp_path / "two"
    write(two / "year=2023" / "part-0.parquet", b"p0")
    write(two / "year=2024" / "part-1.parquet", b"p1")
    assert fingerprint_paths([one], index_dir=idx) == fingerprint_paths([two], index_dir=idx)
    write(two / "year=2024" / "part-1.parquet", b"p2", OLD + 5)
    assert fingerprint_paths([one], index_dir=idx) != fingerprint_paths([two], index_dir=idx)
    (two / "year=2024" / "part-1.parquet").rename(two / "year=2024" / "part-9.parquet")
    assert fingerprint_paths([one], index_dir=idx) != fingerprint_paths([two], index_dir=idx)


def test_several_paths_in_order_and_missing_path_named(tmp_path: Path) -> None:
    idx = tmp_path / "cache"
    a = write(tmp_path / "a", b"a")
    b = write(tmp_path / "b", b"b")
    assert fingerprint_paths([a, b], index_dir=idx) != fingerprint_paths([b, a], index_dir=idx)
    missing = tmp_path / "nope.csv"
    with pytest.raises(FileNotFoundError, match=r"nope\.csv"):
        fingerprint_paths([a, missing], index_dir=idx)
    with pytest.raises(FileNotFoundError, match=r"nope\.csv"):
        fingerprint_file(missing, index_dir=idx)
