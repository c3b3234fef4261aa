"""Stable hashing: the same value gives the same digest in every process and on every run.

A value is encoded into a self-delimiting byte string (a type tag, then a length or a fixed-size
payload, then the contents) and the whole encoding is digested once with xxh3-128. Unordered
containers (dicts, sets) sort the encodings of their members, so neither insertion order nor
``PYTHONHASHSEED`` matters. Large buffers (numpy arrays, DataFrame columns) are digested in place
and only their 16-byte digest joins the encoding, so a 10M-row frame is never copied.

Anything without a known stable encoding raises :class:`UnhashableError`; there is no fallback
to ``id()`` or ``repr()``, because a hash that changes on every run is a cache that never hits,
and one that ignores state is a cache that returns wrong results.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import enum
import fractions
import struct
import sys
import threading
import types
import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import PurePath
from typing import Any

import xxhash

from latent.cache.errors import UnhashableError

__all__ = ["register_hasher", "stable_hash"]

Encoder = Callable[[Any, bytearray], None]

_pack_double = struct.Struct("<d").pack
_pack_2double = struct.Struct("<dd").pack


def stable_hash(obj: object) -> str:
    """Return a 32-character hex digest of ``obj`` that is identical across processes and runs.

    Raises :class:`UnhashableError` (a ``TypeError``) naming the type and where it sits inside
    ``obj`` when some part has no stable encoding; register one with :func:`register_hasher`.
    """
    out = bytearray()
    try:
        encode(obj, out)
    except RecursionError:
        raise UnhashableError(
            _type_name(type(obj)), "", "the value is nested too deeply or contains itself"
        ) from None
    return xxhash.xxh3_128_hexdigest(out)


def register_hasher(tp: type, fn: Callable[[Any], bytes | str]) -> None:
    """Teach :func:`stable_hash` how to hash instances of ``tp`` (and of its subclasses).

    ``fn(value)`` must return bytes or str that identify the value's state and are the same in
    every process. A registration wins over the built-in rules for ``tp`` and its subclasses;
    the type's qualified name is mixed in, so two types returning the same bytes still differ.
    """
    if not isinstance(tp, type):
        raise TypeError(f"register_hasher expects a class, got {tp!r}")
    with _LOCK:
        _USER[tp] = fn
        _DISPATCH.clear()
        _DISPATCH.update(_BUILTIN)


def encode(obj: object, out: bytearray) -> None:
    """Append the stable encoding of ``obj`` to ``out`` (used by containers and by keys)."""
    tp = type(obj)
    # The commonest leaves inline: this function runs once per value of every hashed argument.
    if tp is str:
        data = _utf8(obj)  # type: ignore[arg-type]
        out += b"s%d:" % len(data)
        out += data
        return
    if tp is int:
        out += b"i%x;" % obj  # type: ignore[str-format]
        return
    enc = _DISPATCH.get(tp)
    if enc is None:
        enc = _resolve(tp)
    enc(obj, out)


def _utf8(text: str) -> bytes:
    try:
        return text.encode()
    except UnicodeEncodeError:  # lone surrogates (e.g. from os.fsdecode) still hash stably
        return text.encode("utf-8", "surrogatepass")


def _type_name(tp: type) -> str:
    return f"{tp.__module__}.{tp.__qualname__}"


# -- scalars -------------------------------------------------------------------------------------


def _enc_none(obj: None, out: bytearray) -> None:
    out += b"N"


def _enc_bool(obj: bool, out: bytearray) -> None:
    out += b"T" if obj else b"F"


def _enc_int(obj: int, out: bytearray) -> None:
    # Hex, not decimal: decimal conversion of huge ints is capped by sys.int_info limits.
    out += b"i%x;" % obj


def _enc_float(obj: float, out: bytearray) -> None:
    # All NaNs are one value; -0.0 keeps its sign (copysign/atan2 tell them apart).
    out += b"fnan;" if obj != obj else b"f" + _pack_double(obj)


def _enc_complex(obj: complex, out: bytearray) -> None:
    out += b"c" + _pack_2double(obj.real, obj.imag)


def _enc_str(obj: str, out: bytearray) -> None:
    data = _utf8(obj)
    out += b"s%d:" % len(data)
    out += data


def _enc_bytes(obj: bytes | bytearray | memoryview, out: bytearray) -> None:
    data = obj.tobytes() if isinstance(obj, memoryview) else obj
    out += b"b%d:" % len(data)
    out += data


def _text(tag: bytes, text: str, out: bytearray) -> None:
    data = _utf8(text)
    out += tag + b"%d:" % len(data)
    out += data


def _enc_datetime(obj: _dt.datetime, out: bytearray) -> None:
    _text(b"dt", obj.isoformat(), out)


def _enc_date(obj: _dt.date, out: bytearray) -> None:
    _text(b"da", obj.isoformat(), out)


def _enc_time(obj: _dt.time, out: bytearray) -> None:
    _text(b"tm", obj.isoformat(), out)


def _enc_timedelta(obj: _dt.timedelta, out: bytearray) -> None:
    out += b"td%x,%x,%x;" % (obj.days, obj.seconds, obj.microseconds)


def _enc_timezone(obj: _dt.tzinfo, out: bytearray) -> None:
    _text(b"tz", str(obj), out)


def _enc_decimal(obj: Decimal, out: bytearray) -> None:
    _text(b"de", str(obj), out)


def _enc_fraction(obj: fractions.Fraction, out: bytearray) -> None:
    out += b"fr%x/%x;" % (obj.numerator, obj.denominator)


def _enc_uuid(obj: uuid.UUID, out: bytearray) -> None:
    out += b"u" + obj.bytes


def _enc_path(obj: PurePath, out: bytearray) -> None:
    # The path string, not the file: use fingerprint_file/fingerprint_paths for contents.
    _text(b"p", str(obj), out)


def _enc_range(obj: range, out: bytearray) -> None:
    out += b"r%x,%x,%x;" % (obj.start, obj.stop, obj.step)


def _enc_type(obj: type, out: bytearray) -> None:
    _text(b"C", _type_name(obj), out)


def _enc_function(obj: types.FunctionType, out: bytearray) -> None:
    # A function argument is code: its identity plus its code signature.
    from latent.cache.signature import code_signature

    _text(b"fn", code_signature(obj), out)


def _enc_builtin_function(obj: types.BuiltinFunctionType, out: bytearray) -> None:
    module = getattr(obj, "__module__", None) or type(obj.__self__).__module__
    _text(b"bf", f"{module}.{obj.__qualname__}", out)


# -- containers ----------------------------------------------------------------------------------


def _enc_sequence(tag: bytes, obj: tuple[Any, ...] | list[Any], out: bytearray) -> None:
    out += tag + b"%d:" % len(obj)
    for item in obj:
        try:
            encode(item, out)
        except UnhashableError as err:
            raise err.prefixed(f"[{_index_of(obj, item)}]") from None


def _index_of(obj: tuple[Any, ...] | list[Any], item: object) -> int:
    return next(i for i, x in enumerate(obj) if x is item)


def _enc_tuple(obj: tuple[Any, ...], out: bytearray) -> None:
    _enc_sequence(b"(", obj, out)


def _enc_list(obj: list[Any], out: bytearray) -> None:
    _enc_sequence(b"[", obj, out)


def _enc_dict(obj: dict[Any, Any], out: bytearray) -> None:
    out += b"{%d:" % len(obj)
    try:
        keys = sorted(obj)
    except TypeError:
        keys = None
    if keys and type(keys[0]) is str:
        # All keys are strings (sorting str with anything else raises): their order is total
        # and process-independent, so encode in key order without sorting encodings.
        for key in keys:
            encode(key, out)
            try:
                encode(obj[key], out)
            except UnhashableError as err:
                raise err.prefixed(f"[{key!r}]") from None
        return
    parts = []
    for key, value in obj.items():
        part = bytearray()
        try:
            encode(key, part)
        except UnhashableError as err:
            raise err.prefixed(f"<key {key!r}>") from None
        try:
            encode(value, part)
        except UnhashableError as err:
            raise err.prefixed(f"[{key!r}]") from None
        parts.append(bytes(part))
    parts.sort()
    out += b"".join(parts)


def _enc_set(obj: set[Any] | frozenset[Any], out: bytearray) -> None:
    parts = []
    for item in obj:
        part = bytearray()
        try:
            encode(item, part)
        except UnhashableError as err:
            raise err.prefixed(f"<item {item!r}>") from None
        parts.append(bytes(part))
    parts.sort()
    out += (b"S" if isinstance(obj, frozenset) else b"<") + b"%d:" % len(parts)
    out += b"".join(parts)


def _enc_fields(tag: bytes, tp: type, items: list[tuple[str, Any]], out: bytearray) -> None:
    _text(tag, _type_name(tp), out)
    out += b"%d:" % len(items)
    for name, value in items:
        _enc_str(name, out)
        try:
            encode(value, out)
        except UnhashableError as err:
            raise err.prefixed(f".{name}") from None


def _enc_dataclass(obj: Any, out: bytearray) -> None:
    items = [(f.name, getattr(obj, f.name)) for f in dataclasses.fields(obj)]
    _enc_fields(b"D", type(obj), items, out)


def _enc_pydantic(obj: Any, out: bytearray) -> None:
    tp = type(obj)
    items = [(name, getattr(obj, name)) for name in tp.model_fields]
    extra = getattr(obj, "__pydantic_extra__", None)
    if extra:
        items.append(("__pydantic_extra__", extra))
    _enc_fields(b"P", tp, items, out)


def _enc_enum(obj: enum.Enum, out: bytearray) -> None:
    # By member name: values may be anything, names are what the code refers to.
    _text(b"E", f"{_type_name(type(obj))}.{obj.name}", out)


def _user_encoder(tp: type, fn: Callable[[Any], bytes | str]) -> Encoder:
    def enc(obj: Any, out: bytearray) -> None:
        data = fn(obj)
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogatepass")
        if not isinstance(data, (bytes, bytearray)):
            raise UnhashableError(
                _type_name(type(obj)),
                "",
                f"the hasher registered for {tp.__qualname__} returned "
                f"{type(data).__name__}, expected bytes or str",
            )
        _text(b"U", _type_name(tp), out)
        out += b"%d:" % len(data)
        out += data

    return enc


def _subclass_encoder(tp: type, base_enc: Encoder) -> Encoder:
    """Subclasses of builtins (namedtuples, str subclasses) also carry their own type name."""
    name = _type_name(tp)

    def enc(obj: Any, out: bytearray) -> None:
        _text(b"X", name, out)
        base_enc(obj, out)

    return enc


_BUILTIN: dict[type, Encoder] = {
    type(None): _enc_none,
    bool: _enc_bool,
    int: _enc_int,
    float: _enc_float,
    complex: _enc_complex,
    str: _enc_str,
    bytes: _enc_bytes,
    bytearray: _enc_bytes,
    memoryview: _enc_bytes,
    tuple: _enc_tuple,
    list: _enc_list,
    dict: _enc_dict,
    set: _enc_set,
    frozenset: _enc_set,
    _dt.datetime: _enc_datetime,
    _dt.date: _enc_date,
    _dt.time: _enc_time,
    _dt.timedelta: _enc_timedelta,
    _dt.timezone: _enc_timezone,
    Decimal: _enc_decimal,
    fractions.Fraction: _enc_fraction,
    uuid.UUID: _enc_uuid,
    range: _enc_range,
    type: _enc_type,
    types.FunctionType: _enc_function,
    types.BuiltinFunctionType: _enc_builtin_function,
}
# Matched through the MRO, so PosixPath, WindowsPath and user subclasses all resolve here.
_BASES: dict[type, Encoder] = {PurePath: _enc_path, _dt.tzinfo: _enc_timezone}

_USER: dict[type, Callable[[Any], bytes | str]] = {}
_DISPATCH: dict[type, Encoder] = dict(_BUILTIN)
_LOCK = threading.Lock()


def _resolve(tp: type) -> Encoder:
    """Find (and remember) the encoder for a type not yet in the dispatch table."""
    enc = _find_encoder(tp)
    if enc is None:

        def enc(obj: Any, out: bytearray) -> None:
            raise UnhashableError(_type_name(type(obj)))

        # Not cached: a later register_hasher for this type must take effect.
        return enc
    _DISPATCH[tp] = enc
    return enc


def _find_encoder(tp: type) -> Encoder | None:
    mro = tp.__mro__
    for base in mro:
        if base in _USER:
            return _user_encoder(base, _USER[base])
    if issubclass(tp, enum.Enum):
        return _enc_enum
    roots = {base.__module__.partition(".")[0] for base in mro}
    if roots & {"numpy", "pandas"}:
        from latent.cache import _arrays

        found = _arrays.encoder_for(tp)
        if found is not None:
            return found
    for base in mro:
        if base in _BUILTIN:
            return _subclass_encoder(tp, _BUILTIN[base])
        if base in _BASES:
            return _BASES[base]
    if dataclasses.is_dataclass(tp):
        return _enc_dataclass
    pydantic = sys.modules.get("pydantic")
    if pydantic is not None and issubclass(tp, pydantic.BaseModel):
        return _enc_pydantic
    return None
