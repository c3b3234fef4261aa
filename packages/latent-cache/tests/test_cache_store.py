"""CacheStore: values survive, expire, report their provenance, and broken ones are misses."""

from __future__ import annotations

import os
import sqlite3
import sys
import threading
from datetime import timedelta
from pathlib import Path

import pytest

from latent.cache import (
    MISSING,
    CacheEntryWarning,
    CacheStore,
    UncacheableValueError,
    shared_store,
)


def test_set_get_contains_delete_and_none_is_a_value(tmp_path: Path) -> None:
    store = CacheStore(tmp_path / "c")
    store.set("k", {"a": [1, 2]})
    store.set("none", None)
    assert store.get("k") == {"a": [1, 2]}
    assert store.get("none") is None
    assert store.get("absent") is MISSING
    assert store.get("absent", 7) == 7
    assert "k" in store and "absent" not in store
    assert store.delete("k") is True
    assert store.delete("k") is False
    assert store.get("k") is MISSING


def test_default_directory_is_dot_latent_cache(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = CacheStore()
    store.set("k", 1)
    assert store.directory == tmp_path / ".latent" / "cache"
    assert (tmp_path / ".latent" / "cache" / "cache.db").is_file()


def test_values_persist_across_instances(tmp_path: Path) -> None:
    CacheStore(tmp_path).set("k", "v")
    assert CacheStore(tmp_path).get("k") == "v"


def test_expiry_per_entry_and_default(tmp_path: Path) -> None:
    store = CacheStore(tmp_path, default_expire=timedelta(days=7))
    store.set("gone", 1, expire=-1)
    store.set("week", 2)
    store.set("forever", 3, expire=None)
    store.set("hour", 4, expire=timedelta(hours=1))
    assert store.get("gone") is MISSING
    assert "gone" not in store
    week, forever, hour = (store.describe(k) for k in ("week", "forever", "hour"))
    assert week is not None and week.expires is not None
    assert week.expires - week.created == pytest.approx(7 * 86400)
    assert forever is not None and forever.expires is None
    assert hour is not None and hour.expires == pytest.approx(hour.created + 3600)
    assert store.prune_expired() == 1
    assert [e.key for e in store.entries()] == ["week", "forever", "hour"]


def test_entries_record_function_size_and_ingredients(tmp_path: Path) -> None:
    store = CacheStore(tmp_path)
    store.set("a", "x" * 1000, function="flows.embed", ingredients={"args[0]": "h1"})
    store.set("b", 1, function="flows.score")
    entry = store.describe("a")
    assert entry is not None
    assert entry.function == "flows.embed"
    assert entry.ingredients == {"args[0]": "h1"}
    assert entry.size > 1000
    assert [e.key for e in store.entries(function="embed")] == ["a"]
    assert [e.key for e in store.entries(function="flows.score")] == ["b"]
    assert store.describe("absent") is None
    stats = store.stats()
    assert stats["entries"] == 2 and stats["size_bytes"] > 1000
    assert stats["disk_bytes"] > 0


def test_clear_all_or_by_function(tmp_path: Path) -> None:
    store = CacheStore(tmp_path)
    for i in range(3):
        store.set(f"e{i}", i, function="m.embed")
    store.set("s", 0, function="m.score")
    assert store.clear(function="embed") == 3
    assert [e.key for e in store.entries()] == ["s"]
    assert store.clear() == 1
    assert store.entries() == []


def test_hits_and_misses_are_counted(tmp_path: Path) -> None:
    store = CacheStore(tmp_path)
    store.set("k", 1)
    store.get("k")
    store.get("k")
    store.get("nope")
    assert store.stats()["hits"] == 2 and store.stats()["misses"] == 1


class Renamed:
    pass


def test_entry_whose_class_is_gone_is_a_miss_with_warning_and_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = CacheStore(tmp_path)
    store.set("k", Renamed())
    monkeypatch.delattr(sys.modules[Renamed.__module__], "Renamed")
    with pytest.warns(CacheEntryWarning, match="could not be read back"):
        assert store.get("k") is MISSING
    assert "k" not in store
    assert store.describe("k") is None


def test_truncated_value_file_is_a_miss_with_warning(tmp_path: Path) -> None:
    store = CacheStore(tmp_path)
    store.set("big", list(range(100_000)))  # large enough for diskcache to use a file
    files = [p for p in tmp_path.rglob("*.val")]
    assert len(files) == 1
    data = files[0].read_bytes()
    files[0].write_bytes(data[: len(data) // 2])
    with pytest.warns(CacheEntryWarning):
        assert store.get("big") is MISSING
    assert "big" not in store


def test_garbage_in_database_row_is_a_miss(tmp_path: Path) -> None:
    store = CacheStore(tmp_path)
    store.set("k", "value")
    store.close()
    with sqlite3.connect(tmp_path / "cache.db") as con:
        con.execute("UPDATE Cache SET value = ? WHERE value IS NOT NULL", (b"\x80garbage",))
    with pytest.warns(CacheEntryWarning):
        assert CacheStore(tmp_path).get("k") is MISSING


def test_unpicklable_value_raises_a_clear_error(tmp_path: Path) -> None:
    store = CacheStore(tmp_path)
    with pytest.raises(UncacheableValueError, match="cannot be pickled") as info:
        store.set("k", threading.Lock())
    assert "'k'" in str(info.value)
    assert "k" not in store


def test_shared_store_is_one_instance_per_directory_across_threads(tmp_path: Path) -> None:
    seen: list[CacheStore] = []
    barrier = threading.Barrier(12)

    def grab() -> None:
        barrier.wait()
        seen.append(shared_store(tmp_path / "shared"))

    threads = [threading.Thread(target=grab) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(s) for s in seen}) == 1
    assert shared_store(str(tmp_path / "shared")) is seen[0]
    assert shared_store(os.path.join(tmp_path, "other")) is not seen[0]
