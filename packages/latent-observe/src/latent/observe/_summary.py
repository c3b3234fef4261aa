"""Bounded, JSON-able summaries of task inputs and outputs, with secrets redacted.

Spans, params and `TaskExecutionError` all record user values; a 2 GB DataFrame or an API key
must never reach the tracking store or an error message. Keys named like secrets hide their
values (and those values are remembered, so they are hidden wherever they appear later); text
is also redacted by value (`_redact`: ``sk-…``, ``Bearer …``, ``password=…``). Everything here
is pure Python: pandas and numpy objects are recognised by duck typing, so neither is imported.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from latent.observe._redact import redact_text, remember_secret

#: Keys whose values are secrets. `token(?!s)` keeps counts such as `max_tokens` visible: they are
#: the most common LLM parameter and hold no secret, while `token`, `access_token` still match.
SECRET_KEY_PATTERN = re.compile(r"key|token(?!s)|secret|password|credential", re.IGNORECASE)
REDACTED = "***"

_MAX_ITEMS = 20  # items kept from a sequence or mapping
_MAX_DEPTH = 5  # nesting kept before a value becomes its (truncated) repr
_HEAD_ROWS = 5  # DataFrame rows shown


def is_secret_key(key: object) -> bool:
    """Whether a mapping key names a secret (see `SECRET_KEY_PATTERN`)."""
    return isinstance(key, str) and SECRET_KEY_PATTERN.search(key) is not None


def redact(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """Copy `mapping` with the values of secret-looking keys replaced by ``"***"``, recursively.

    Unlike `summarize` nothing is truncated: this is for params, whose size MLflow bounds itself.
    """
    out = {}
    for key, value in mapping.items():
        if is_secret_key(key):
            remember_secret(value)
            out[key] = REDACTED
        else:
            out[key] = _redact_value(value)
    return out


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return redact(value)
    if isinstance(value, list | tuple):
        items = [_redact_value(item) for item in value]
        return items if isinstance(value, list) else tuple(items)
    return value


def summarize(value: Any, *, max_len: int = 500) -> Any:
    """A bounded JSON-able picture of `value` for spans and error messages.

    DataFrame -> type/shape/columns/head; long strings truncated to `max_len`; sequences and
    mappings cut to their first 20 items; keys matching key|token|secret|password|credential
    redacted at any depth; anything else becomes its (truncated) ``repr``.
    """
    return _summarize(value, max_len, 0)


def _summarize(value: Any, max_len: int, depth: int) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return _clip(value, max_len)
    if isinstance(value, bytes | bytearray):
        return f"<{type(value).__name__} len={len(value)}>"
    if depth >= _MAX_DEPTH:
        return _clip(_safe_repr(value), max_len)
    kind = _pandas_kind(value)
    if kind == "DataFrame":
        return _summarize_frame(value, max_len, depth)
    if kind == "Series":
        return _summarize_series(value, max_len, depth)
    if _is_ndarray(value):
        return _summarize_array(value, max_len, depth)
    if isinstance(value, Mapping):
        return _summarize_mapping(value, max_len, depth)
    if isinstance(value, list | tuple | set | frozenset):
        return _summarize_sequence(list(value), max_len, depth)
    if hasattr(value, "model_dump") and callable(value.model_dump):  # pydantic model
        return _summarize_object(value, lambda: value.model_dump(), max_len, depth)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        return _summarize_object(value, lambda: fields, max_len, depth)
    return _clip(_safe_repr(value), max_len)


def _clip(text: str, max_len: int) -> str:
    """Redacted and truncated; only the kept head is scanned (a 100 MB string costs nothing)."""
    if len(text) <= max_len:
        return redact_text(text)
    head = redact_text(text[: max_len + 200])  # the margin: a secret cut at max_len still matches
    return f"{head[:max_len]}… (+{len(text) - max_len} chars)"


def _safe_repr(value: Any) -> str:
    try:
        text = repr(value)
    except Exception:  # a broken __repr__ must not break error reporting
        return f"<{type(value).__name__} (repr failed)>"
    return text


def _summarize_mapping(value: Mapping[Any, Any], max_len: int, depth: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for index, (key, item) in enumerate(value.items()):
        if index == _MAX_ITEMS:
            out["…"] = f"+{len(value) - _MAX_ITEMS} more keys"
            break
        name = key if isinstance(key, str) else _clip(_safe_repr(key), 100)
        if is_secret_key(name):
            remember_secret(item)
            out[name] = REDACTED
        else:
            out[name] = _summarize(item, max_len, depth + 1)
    return out


def _summarize_sequence(items: list[Any], max_len: int, depth: int) -> list[Any]:
    out = [_summarize(item, max_len, depth + 1) for item in items[:_MAX_ITEMS]]
    if len(items) > _MAX_ITEMS:
        out.append(f"… +{len(items) - _MAX_ITEMS} more items")
    return out


def _summarize_object(value: Any, fields: Any, max_len: int, depth: int) -> Any:
    try:
        data = fields()
    except Exception:
        return _clip(_safe_repr(value), max_len)
    summary = _summarize_mapping(data, max_len, depth)
    return {"type": type(value).__name__, **summary}


def _pandas_kind(value: Any) -> str | None:
    cls = type(value)
    if cls.__module__.startswith("pandas") and cls.__name__ in ("DataFrame", "Series"):
        return cls.__name__
    return None


def _is_ndarray(value: Any) -> bool:
    cls = type(value)
    return cls.__module__ == "numpy" and cls.__name__ == "ndarray"


def _summarize_frame(frame: Any, max_len: int, depth: int) -> dict[str, Any]:
    columns = [str(column) for column in frame.columns]
    try:
        head = frame.head(_HEAD_ROWS).to_dict(orient="records")
    except Exception:
        head = []
    return {
        "type": "DataFrame",
        "shape": list(frame.shape),
        "columns": _summarize_sequence(columns, max_len, depth),
        "head": _summarize_sequence(head, max_len, depth),
    }


def _summarize_series(series: Any, max_len: int, depth: int) -> dict[str, Any]:
    return {
        "type": "Series",
        "name": _summarize(series.name, max_len, depth + 1),
        "length": len(series),
        "dtype": str(series.dtype),
        "head": _summarize_sequence(series.head(_HEAD_ROWS).tolist(), max_len, depth),
    }


def _summarize_array(array: Any, max_len: int, depth: int) -> dict[str, Any]:
    flat = array.ravel()[:_HEAD_ROWS].tolist()
    return {
        "type": "ndarray",
        "shape": list(array.shape),
        "dtype": str(array.dtype),
        "head": _summarize_sequence(flat, max_len, depth),
    }
