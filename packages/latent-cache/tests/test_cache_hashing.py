"""stable_hash: deterministic across processes, distinct for distinct values, extensible."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import math
import uuid
from collections import namedtuple
from decimal import Decimal
from pathlib import Path, PurePosixPath

import pytest

from latent.cache import UnhashableError, register_hasher, stable_hash

SAMPLES = {
    "none": None,
    "true": True,
    "one": 1,
    "one_float": 1.0,
    "big": 10**5000,
    "neg": -7,
    "nan": math.nan,
    "neg_zero": -0.0,
    "zero": 0.0,
    "str": "héllo",
    "bytes": b"hello",
    "tuple": (1, 2),
    "list": [1, 2],
    "dict": {"b": 2, "a": [1, {"x": None}]},
    "mixed_keys": {1: "a", "1": "b", (2, 3): "c"},
    "set": {3, 1, 2},
    "frozenset": frozenset({"x", "y"}),
    "datetime": dt.datetime(2024, 5, 1, 12, 30, tzinfo=dt.UTC),
    "naive": dt.datetime(2024, 5, 1, 12, 30),
    "date": dt.date(2024, 5, 1),
    "delta": dt.timedelta(days=7),
    "decimal": Decimal("1.10"),
    "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "path": Path("data/raw.csv"),
}


def test_every_sample_hashes_to_a_distinct_32_char_hex_digest() -> None:
    digests = {name: stable_hash(value) for name, value in SAMPLES.items()}
    assert all(len(d) == 32 and int(d, 16) >= 0 for d in digests.values())
    assert len(set(digests.values())) == len(digests), digests


def test_same_digest_in_processes_with_different_hash_seeds(run_python) -> None:
    code = """
        import sys
        sys.path.insert(0, sys.argv[1])
        from test_cache_hashing import SAMPLES
        from latent.cache import stable_hash
        print(stable_hash(SAMPLES))
        print(stable_hash({"s": {"a", "b", "c", "d"}, "d": dict(zip("zyxw", range(4)))}))
    """
    here = str(Path(__file__).parent)
    outs = {run_python(code, here, PYTHONHASHSEED=seed).stdout for seed in ("0", "1", "4242")}
    assert len(outs) == 1
    assert stable_hash(SAMPLES) == outs.pop().split()[0]


def test_dict_and_set_order_do_not_matter_but_sequence_kind_does() -> None:
    assert stable_hash({"a": 1, "b": 2}) == stable_hash({"b": 2, "a": 1})
    assert stable_hash({1: "a", "x": 2}) == stable_hash({"x": 2, 1: "a"})
    assert stable_hash({"a", "b", "c"}) == stable_hash({"c", "b", "a"})
    assert stable_hash((1, 2)) != stable_hash([1, 2])
    assert stable_hash({1, 2}) != stable_hash(frozenset({1, 2}))
    assert stable_hash(["ab", "c"]) != stable_hash(["a", "bc"])


def test_all_nans_are_one_value_and_values_keep_their_type() -> None:
    assert stable_hash(float("nan")) == stable_hash(-math.nan)
    assert stable_hash(1) != stable_hash(True) != stable_hash(1.0)
    assert stable_hash("1") != stable_hash(b"1")


@dataclasses.dataclass
class Point:
    x: int
    y: list[int]


@dataclasses.dataclass
class OtherPoint:
    x: int
    y: list[int]


class Color(enum.Enum):
    RED = 1
    BLUE = 2


Pair = namedtuple("Pair", "a b")


def test_dataclasses_enums_namedtuples_and_paths() -> None:
    assert stable_hash(Point(1, [2])) == stable_hash(Point(1, [2]))
    assert stable_hash(Point(1, [2])) != stable_hash(Point(1, [3]))
    assert stable_hash(Point(1, [2])) != stable_hash(OtherPoint(1, [2]))
    assert stable_hash(Color.RED) != stable_hash(Color.BLUE)
    assert stable_hash(Color.RED) != stable_hash(1)
    assert stable_hash(Pair(1, 2)) != stable_hash((1, 2))
    assert stable_hash(Path("a/b")) == stable_hash(PurePosixPath("a/b"))


def test_pydantic_models_hash_by_class_and_fields() -> None:
    pydantic = pytest.importorskip("pydantic")

    class Doc(pydantic.BaseModel):
        id: int
        tags: list[str]

    class Other(pydantic.BaseModel):
        id: int
        tags: list[str]

    assert stable_hash(Doc(id=1, tags=["a"])) == stable_hash(Doc(id=1, tags=["a"]))
    assert stable_hash(Doc(id=1, tags=["a"])) != stable_hash(Doc(id=1, tags=["b"]))
    assert stable_hash(Doc(id=1, tags=["a"])) != stable_hash(Other(id=1, tags=["a"]))


class Client:
    def __init__(self, url: str) -> None:
        self.url = url


def test_unknown_object_raises_naming_type_path_and_fix() -> None:
    with pytest.raises(UnhashableError) as info:
        stable_hash({"config": {"client": Client("http://x")}})
    err = info.value
    assert isinstance(err, TypeError)
    assert err.type_name.endswith("test_cache_hashing.Client")
    assert err.path == "['config']['client']"
    assert "register_hasher(Client, fn)" in str(err)
    assert "cache=False" in str(err)


def test_self_referencing_list_raises_unhashable() -> None:
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(UnhashableError, match="contains itself"):
        stable_hash(loop)


class Model:
    def __init__(self, name: str) -> None:
        self.name = name


class FineTuned(Model):
    pass


def test_register_hasher_applies_to_the_type_and_its_subclasses() -> None:
    register_hasher(Model, lambda m: m.name)
    assert stable_hash(Model("a")) == stable_hash(Model("a"))
    assert stable_hash(Model("a")) != stable_hash(Model("b"))
    assert stable_hash(FineTuned("a")) == stable_hash(FineTuned("a"))
    assert stable_hash([Model("a")]) != stable_hash(["a"])


def test_numpy_arrays_hash_dtype_shape_and_bytes() -> None:
    np = pytest.importorskip("numpy")
    a = np.arange(12, dtype="int64")
    assert stable_hash(a) == stable_hash(a.copy())
    assert stable_hash(a) != stable_hash(a.astype("int32"))
    assert stable_hash(a) != stable_hash(a.reshape(3, 4))
    assert stable_hash(a.reshape(3, 4).T) == stable_hash(np.ascontiguousarray(a.reshape(3, 4).T))
    assert stable_hash(np.int64(3)) != stable_hash(np.int32(3))
    assert stable_hash({"w": a}) == stable_hash({"w": np.arange(12, dtype="int64")})


def _frame():  # type: ignore[no-untyped-def]
    import numpy as np
    import pandas as pd

    return pd.DataFrame(
        {
            "i": np.arange(6, dtype="int64"),
            "f": [0.5, math.nan, -0.0, 1e300, 2.0, 3.0],
            "s": ["a", "b", None, "dd", "é", ""],
            "c": pd.Categorical(["x", "y", "x", "z", "y", "x"]),
            "t": pd.date_range("2024-01-01", periods=6, freq="h"),
            "tz": pd.date_range("2024-01-01", periods=6, freq="D", tz="Europe/Paris"),
        },
        index=pd.Index([10, 11, 12, 13, 14, 15], name="row"),
    )


def test_dataframe_equal_after_copy_and_parquet_round_trip(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    df = _frame()
    df.to_parquet(tmp_path / "df.parquet")
    back = pd.read_parquet(tmp_path / "df.parquet")
    assert back.equals(df)
    assert stable_hash(df) == stable_hash(df.copy()) == stable_hash(back)
    assert stable_hash(df["s"]) == stable_hash(back["s"])


def test_dataframe_differs_on_dtype_names_order_index_and_values() -> None:
    pytest.importorskip("pandas")
    df = _frame()
    base = stable_hash(df)
    variants = {
        "int32": df.astype({"i": "int32"}),
        "category_as_str": df.astype({"c": "str"}),
        "str_as_object": df.astype({"s": "object"}),
        "renamed": df.rename(columns={"i": "j"}),
        "reordered": df[["f", "i", "s", "c", "t", "tz"]],
        "index": df.set_axis(range(6)),
        "index_name": df.rename_axis("other"),
        "value": df.assign(i=df["i"] + 1),
        "string_value": df.assign(s=["a", "b", None, "dd", "é", "x"]),
        "tz": df.assign(tz=df["tz"].dt.tz_convert("UTC")),
    }
    digests = {name: stable_hash(v) for name, v in variants.items()}
    assert base not in digests.values()
    assert len(set(digests.values())) == len(digests)


def test_series_and_index_and_object_columns() -> None:
    pd = pytest.importorskip("pandas")
    s = pd.Series([1, 2, 3], name="n")
    assert stable_hash(s) == stable_hash(s.copy())
    assert stable_hash(s) != stable_hash(s.rename("m"))
    assert stable_hash(pd.Index(["a", "b"])) != stable_hash(pd.Index(["b", "a"]))
    dicts = pd.Series([{"a": 1}, {"b": 2}])
    assert stable_hash(dicts) == stable_hash(pd.Series([{"a": 1}, {"b": 2}]))
    assert stable_hash(dicts) != stable_hash(pd.Series([{"a": 1}, {"b": 3}]))


_MISSING_KINDS = ["None", "NaN", "pd.NA", "NaT"]
_MISSING_PAIRS = [(a, b) for i, a in enumerate(_MISSING_KINDS) for b in _MISSING_KINDS[i + 1 :]]


def _missing(kind: str) -> object:
    pd = pytest.importorskip("pandas")
    return {"None": None, "NaN": math.nan, "pd.NA": pd.NA, "NaT": pd.NaT}[kind]


@pytest.mark.parametrize(("a", "b"), _MISSING_PAIRS, ids=[f"{a}-{b}" for a, b in _MISSING_PAIRS])
def test_missing_values_hash_apart_in_object_columns_series_and_containers(a: str, b: str) -> None:
    """A task that treats None and NaN differently must not get the other's cached answer."""
    pd = pytest.importorskip("pandas")
    x, y = _missing(a), _missing(b)

    def column(v: object) -> object:
        return pd.DataFrame({"c": ["a", v, "b"]}, dtype=object)

    def series(v: object) -> object:
        return pd.Series(["a", v], dtype=object)

    def index(v: object) -> object:
        return pd.Index(["a", v], dtype=object)

    for build in (column, series, index, lambda v: [v], lambda v: {"k": v}, lambda v: (1, v)):
        assert stable_hash(build(x)) != stable_hash(build(y)), build
    # The same kind of missing value in the same place still hashes the same (after a copy too).
    assert stable_hash(column(x)) == stable_hash(column(x).copy())


def test_object_columns_without_missing_values_keep_their_digest() -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"c": ["a", "b"]}, dtype=object)
    assert stable_hash(frame) == stable_hash(frame.copy())
    assert stable_hash(frame) != stable_hash(pd.DataFrame({"c": ["a", None]}, dtype=object))


def test_import_does_not_pull_heavy_libraries(run_python) -> None:
    out = run_python(
        """
        import sys
        import latent.cache
        heavy = ["pandas", "numpy", "pyarrow", "prefect", "mlflow", "pydantic", "latent.config"]
        print(",".join(m for m in heavy if m in sys.modules))
        """
    ).stdout.strip()
    assert out == ""
