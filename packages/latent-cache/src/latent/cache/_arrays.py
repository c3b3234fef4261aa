"""Stable, vectorised encodings of numpy arrays and pandas objects.

Imported only when :func:`stable_hash` meets a numpy or pandas object, so numpy and pandas are
never imported by ``import latent.cache``. Each column is digested in place (xxh3-128 over its
buffer) and only the 16-byte digest joins the encoding, so no row is ever visited in Python.

Canonical forms, chosen so that equal frames hash equal after ``df.copy()`` or a parquet round
trip while frames a user would call different do not:
- numeric, bool and datetime64/timedelta64 columns: their raw buffer, plus the dtype (so int64
  and int32 differ; all NaNs of a float column keep their bit pattern, which parquet preserves);
- pyarrow-backed strings (pandas 3's ``str``): offsets rebased to zero and the UTF-8 bytes they
  span, plus the null mask, so chunking and ``string`` vs ``large_string`` storage do not matter;
- categoricals: codes + categories + ordered, plus the dtype name (so category and str differ);
- anything else: ``pandas.util.hash_pandas_object`` per row, or, for objects pandas cannot hash
  (dicts in a column), the per-element stable encoding. pandas hashes every missing value
  alike, so an object column also records which kind each missing cell holds (``None``,
  ``NaN``, ``pd.NA``, ``NaT``): a task may treat them differently, so its key must too.
"""

from __future__ import annotations

import sys
from typing import Any

import xxhash

from latent.cache.errors import UnhashableError
from latent.cache.hashing import Encoder, encode

_NUMERIC_KINDS = "biufcmM"


def encoder_for(tp: type) -> Encoder | None:
    """Return the encoder for a numpy/pandas type, or None to let the generic rules decide."""
    np = sys.modules.get("numpy")
    if np is not None:
        if issubclass(tp, np.ndarray):
            return _enc_ndarray
        if issubclass(tp, np.generic):
            return _enc_np_scalar
    pd = sys.modules.get("pandas")
    if pd is None:
        return None
    if issubclass(tp, pd.DataFrame):
        return _enc_frame
    if issubclass(tp, pd.Series):
        return _enc_series
    if issubclass(tp, pd.Index):
        return _enc_index
    if issubclass(tp, pd.api.extensions.ExtensionArray):
        return _enc_extension_array
    if tp is type(pd.NA):
        return _enc_pandas_na
    return None


def _digest(buffer: Any) -> bytes:
    return xxhash.xxh3_128_digest(buffer)


def _enc_ndarray(obj: Any, out: bytearray) -> None:
    import numpy as np

    out += b"A" + obj.dtype.str.encode() + b"%r:" % (obj.shape,)
    if obj.dtype.kind == "O":
        try:
            encode(obj.tolist(), out)
        except UnhashableError as err:
            raise err.prefixed("<array element>") from None
        return
    if obj.dtype.fields is not None:
        out += str(obj.dtype.descr).encode()
    out += _digest(np.ascontiguousarray(obj).view(np.uint8).reshape(-1))


def _enc_np_scalar(obj: Any, out: bytearray) -> None:
    if obj.dtype.kind == "O":
        encode(obj.item(), out)
        return
    data = obj.tobytes()
    out += b"a" + obj.dtype.str.encode() + b"%d:" % len(data)
    out += data


def _enc_pandas_na(obj: Any, out: bytearray) -> None:
    out += b"pdNA"


def _label(value: Any, out: bytearray, where: str) -> None:
    try:
        encode(value, out)
    except UnhashableError as err:
        raise err.prefixed(where) from None


def _enc_frame(obj: Any, out: bytearray) -> None:
    rows, cols = obj.shape
    out += b"DF%d,%d:" % (rows, cols)
    for i in range(cols):
        label = obj.columns[i]
        _label(label, out, f"<column {i}>")
        _enc_values(obj.iloc[:, i].array, out, f"[{label!r}]")
    _enc_index(obj.index, out)
    _enc_index(obj.columns, out, values=False)


def _enc_series(obj: Any, out: bytearray) -> None:
    out += b"SR%d:" % len(obj)
    _label(obj.name, out, ".name")
    _enc_values(obj.array, out, "")
    _enc_index(obj.index, out)


def _enc_index(obj: Any, out: bytearray, values: bool = True) -> None:
    """Index names and values; RangeIndex and an equal int64 Index hash alike."""
    out += b"IX%d:" % obj.nlevels
    _label(list(obj.names), out, ".index.names")
    if not values:
        return
    for level in range(obj.nlevels):
        level_values = obj.get_level_values(level) if obj.nlevels > 1 else obj
        _enc_values(level_values.array, out, ".index")


def _enc_extension_array(obj: Any, out: bytearray) -> None:
    out += b"EA%d:" % len(obj)
    _enc_values(obj, out, "")


def _enc_values(arr: Any, out: bytearray, where: str) -> None:
    """Append dtype + digest of one column's values (an ExtensionArray or ndarray)."""
    import numpy as np
    import pandas as pd

    dtype = arr.dtype
    out += b"V" + repr(dtype).encode() + b":"
    if isinstance(dtype, pd.CategoricalDtype):
        out += b"o" if dtype.ordered else b"u"
        out += _digest(np.ascontiguousarray(arr.codes))
        _enc_values(dtype.categories.array, out, where + ".categories")
        return
    if isinstance(dtype, pd.DatetimeTZDtype):
        out += _digest(np.ascontiguousarray(arr.asi8))
        return
    plain = arr if isinstance(arr, np.ndarray) else None
    if isinstance(arr, pd.arrays.NumpyExtensionArray) or isinstance(dtype, np.dtype):
        plain = np.asarray(arr)  # a view: numpy-backed columns and datetime64 arrays
    if plain is not None and plain.dtype.kind in _NUMERIC_KINDS:
        out += _digest(np.ascontiguousarray(plain).view(np.uint8).reshape(-1))
        return
    if getattr(dtype, "storage", None) == "pyarrow" or isinstance(dtype, pd.ArrowDtype):
        digest = _arrow_digest(arr)
        if digest is not None:
            out += digest
            return
    _enc_generic_values(arr, out, where)


def _arrow_digest(arr: Any) -> bytes | None:
    """Digest of a pyarrow-backed string column, independent of chunking and offset width."""
    import numpy as np
    import pyarrow as pa

    data = pa.array(arr)
    if isinstance(data, pa.ChunkedArray):
        data = data.combine_chunks()
    if pa.types.is_string(data.type):
        data = data.cast(pa.large_string())
    if not pa.types.is_large_string(data.type):
        return None
    _validity, offsets_buf, values_buf = data.buffers()
    n = len(data)
    offsets = np.frombuffer(offsets_buf, dtype=np.int64)[data.offset : data.offset + n + 1]
    start, end = (int(offsets[0]), int(offsets[-1])) if n else (0, 0)
    h = xxhash.xxh3_128()
    h.update(np.ascontiguousarray(offsets - start).data)
    if values_buf is not None:
        h.update(memoryview(values_buf)[start:end])
    if data.null_count:
        h.update(b"nulls")
        h.update(np.ascontiguousarray(data.is_null().to_numpy(zero_copy_only=False)).data)
    return h.digest()


def _enc_generic_values(arr: Any, out: bytearray, where: str) -> None:
    import numpy as np
    import pandas as pd

    try:
        hashed = pd.util.hash_pandas_object(pd.Series(arr, copy=False), index=False)
    except TypeError:
        # Unhashable cells (dicts, lists): only a per-element encoding can be stable.
        try:
            encode(list(arr), out)
        except UnhashableError as err:
            raise err.prefixed(where) from None
        return
    out += _digest(np.ascontiguousarray(hashed.to_numpy()))
    if getattr(arr.dtype, "kind", None) == "O":
        _enc_missing_kinds(np.asarray(arr, dtype=object), out)


def _enc_missing_kinds(values: Any, out: bytearray) -> None:
    """Append one tag per missing cell of an object column (only its missing cells are visited)."""
    import numpy as np
    import pandas as pd

    positions = np.flatnonzero(pd.isna(values))
    if not len(positions):
        return
    tags = bytes(_missing_tag(values[i]) for i in positions)
    out += b"M%d:" % len(tags)
    out += _digest(tags)


def _missing_tag(value: Any) -> int:
    """A one-byte kind for a missing value: None, NaN, pd.NA, NaT, or anything else."""
    import numpy as np
    import pandas as pd

    if value is None:
        return 0x4E  # N
    if value is pd.NA:
        return 0x41  # A
    if value is pd.NaT or isinstance(value, np.datetime64 | np.timedelta64):
        return 0x54  # T
    if isinstance(value, float | np.floating):
        return 0x46  # F
    return 0x3F  # ?  (e.g. Decimal('NaN'))
