"""latent-cache benchmarks: our hashing, caching and fingerprinting beside the usual baselines.

Run from the repository root:

    uv run --frozen python benchmarks/bench_cache.py           # full sizes (10M rows, 1 GiB)
    uv run --frozen python benchmarks/bench_cache.py --quick   # 1M rows, 100 MiB

Prints one table of side-by-side timings and ratios (ours / baseline; below 1 means we are
faster). Nothing is asserted: timings depend on the machine.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import os
import sys
import tempfile
import time
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

try:
    import latent.cache  # noqa: F401
except ImportError:  # running from a checkout whose venv predates the package modules
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "packages/latent-cache/src"))

import diskcache
import joblib
import numpy as np
import pandas as pd
import pyarrow as pa
import xxhash

from latent.cache import cached, checkpoint, configure_checkpoints, fingerprint_file, stable_hash

Row = tuple[str, float, str, float, str]
ROWS: list[Row] = []


def best(fn: Callable[[], Any], *, number: int = 1, repeat: int = 3) -> float:
    """Best wall time of one call, in seconds (min over repeats filters machine noise)."""
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number


def record(name: str, ours: float, base_name: str, base: float) -> None:
    ROWS.append((name, ours, base_name, base, f"{ours / base:.2f}x"))


def fmt(seconds: float) -> str:
    if seconds >= 0.1:
        return f"{seconds:.3f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.2f} µs"


def make_frame(rows: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    words = np.array([f"word-{i}" for i in range(1000)], dtype=object)
    return pd.DataFrame(
        {
            "int": rng.integers(0, 1_000_000, rows, dtype="int64"),
            "float": rng.random(rows),
            "str": pd.array(words[rng.integers(0, 1000, rows)], dtype="str"),
            "category": pd.Categorical.from_codes(rng.integers(0, 5, rows), list("abcde")),
            "datetime": pd.date_range("2020-01-01", periods=rows, freq="s"),
        }
    )


def arrow_ipc_xxh3(df: pd.DataFrame) -> str:
    table = pa.Table.from_pandas(df)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return xxhash.xxh3_128_hexdigest(sink.getvalue())


def bench_frame(rows: int, with_joblib: bool) -> None:
    df = make_frame(rows)
    ours = best(lambda: stable_hash(df))
    arrow = best(lambda: arrow_ipc_xxh3(df))
    record(f"stable_hash DataFrame {rows:,}x5", ours, "Arrow IPC + xxh3", arrow)
    if with_joblib:
        jl = best(lambda: joblib.hash(df), repeat=1)
        record(f"stable_hash DataFrame {rows:,}x5", ours, "joblib.hash", jl)


def bench_digests(size: int) -> None:
    buf = np.random.default_rng(1).integers(0, 255, size, dtype=np.uint8).tobytes()
    x = best(lambda: xxhash.xxh3_128_digest(buf))
    record(
        f"digest {size >> 20} MiB buffer: xxh3_128",
        x,
        "blake2b",
        best(lambda: hashlib.blake2b(buf).digest()),
    )
    record(
        f"digest {size >> 20} MiB buffer: xxh3_128",
        x,
        "md5",
        best(lambda: hashlib.md5(buf).digest()),
    )


SMALL = {"id": 42, "prompt": "Summarise the document.", "temperature": 0.2, "tags": ["a", "b"]}


def bench_small_dict() -> None:
    n = 20_000
    ours = best(lambda: stable_hash(SMALL), number=n, repeat=5)
    jl = best(lambda: joblib.hash(SMALL), number=2_000, repeat=3)
    record("stable_hash small dict", ours, "joblib.hash", jl)


def bench_checkpoint(tmp: Path) -> None:
    configure_checkpoints(environment="dev", directory=tmp / "ck")

    @checkpoint
    def llm_call(doc: dict[str, Any]) -> dict[str, Any]:
        return {"id": doc["id"], "response": doc["prompt"].upper()}

    llm_call(SMALL)
    n = 5_000
    ours = best(lambda: llm_call(SMALL), number=n, repeat=5)
    raw = diskcache.Cache(str(tmp / "raw"))
    raw.set("key", {"id": 42, "response": "X"})
    base = best(lambda: raw.get("key"), number=n, repeat=5)
    record("@checkpoint hit", ours, "diskcache.Cache.get", base)
    memory = joblib.Memory(str(tmp / "joblib"), verbose=0)
    jl_call = memory.cache(lambda doc: {"id": doc["id"]})
    jl_call(SMALL)
    record(
        "@checkpoint hit",
        ours,
        "joblib.Memory hit",
        best(lambda: jl_call(SMALL), number=500, repeat=3),
    )


def bench_cached(tmp: Path) -> None:
    @cached(store=tmp / "cached")
    def add(a: int, b: int) -> int:
        return a + b

    @functools.cache
    def add_lru(a: int, b: int) -> int:
        return a + b

    memory = joblib.Memory(str(tmp / "joblib2"), verbose=0)

    def add_jl(a: int, b: int) -> int:
        return a + b

    add_joblib = memory.cache(add_jl)
    for fn in (add, add_lru, add_joblib):
        fn(1, 2)
    n = 5_000
    ours = best(lambda: add(1, 2), number=n, repeat=5)
    record(
        "@cached hit",
        ours,
        "functools.lru_cache",
        best(lambda: add_lru(1, 2), number=n * 20, repeat=5),
    )
    record(
        "@cached hit",
        ours,
        "joblib.Memory hit",
        best(lambda: add_joblib(1, 2), number=500, repeat=3),
    )


def bench_fingerprint(tmp: Path, size: int) -> None:
    path = tmp / "big.bin"
    chunk = np.random.default_rng(2).integers(0, 255, 64 << 20, dtype=np.uint8).tobytes()
    with open(path, "wb") as f:
        for _ in range(size // len(chunk)):
            f.write(chunk)
    old = time.time_ns() - 3_600_000_000_000
    os.utime(path, ns=(old, old))
    index = tmp / "fp"
    fingerprint_file(path, index_dir=index)  # indexes it
    unchanged = best(lambda: fingerprint_file(path, index_dir=index), number=200, repeat=3)
    state = {"t": old}

    def changed() -> str:
        state["t"] += 1_000  # a new mtime: the index no longer vouches for the content
        os.utime(path, ns=(state["t"], state["t"]))
        return fingerprint_file(path, index_dir=index)

    record(
        f"fingerprint {size >> 20} MiB file, unchanged",
        unchanged,
        "changed (full read)",
        best(changed, repeat=3),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1M rows and a 100 MiB file")
    parser.add_argument(
        "--skip-joblib-frame",
        action="store_true",
        help="skip joblib.hash of the big frame (the slowest row)",
    )
    opts = parser.parse_args()
    rows = 1_000_000 if opts.quick else 10_000_000
    size = (128 << 20) if opts.quick else (1 << 30)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        bench_frame(rows, with_joblib=not opts.skip_joblib_frame)
        bench_digests(256 << 20 if not opts.quick else 64 << 20)
        bench_small_dict()
        bench_checkpoint(tmp)
        bench_cached(tmp)
        bench_fingerprint(tmp, size)
    header = ("measure", "ours", "baseline", "baseline time", "ours/baseline")
    table = [header] + [(n, fmt(o), b, fmt(bt), r) for n, o, b, bt, r in ROWS]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for i, row in enumerate(table):
        print(" | ".join(cell.ljust(widths[j]) for j, cell in enumerate(row)))
        if i == 0:
            print("-+-".join("-" * w for w in widths))


if __name__ == "__main__":
    main()
