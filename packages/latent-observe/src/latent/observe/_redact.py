"""Value-based redaction: credentials in text never reach a log, a span, MLflow or an error.

`_summary.redact` hides the values of keys *named* like secrets (``api_key``, ``token``). That
misses the commonest leak: an exception whose message quotes a request (``HTTP 401 headers=
{'Authorization': 'Bearer sk-…'}``), or a traceback whose source line holds a key. This module
looks at the text itself:

- tokens with a recognisable shape: ``sk-…`` (OpenAI, Anthropic), ``Bearer …``,
  GitHub (``ghp_…``, ``github_pat_…``), AWS access key ids (``AKIA…``/``ASIA…``), Slack
  (``xox…-``), Google API keys (``AIza…``);
- ``name=value`` / ``"name": "value"`` where the name is secret-like (``password``,
  ``api_key``, ``access_token``, ``Authorization``…);
- the values of parameters stored under secret-like keys (`remember_secret`), wherever they
  appear later, e.g. echoed back in an error;
- patterns a project adds (`configure_redaction`, fed from ``[observe] secret_patterns``).

Only copies are redacted: the exception a user catches keeps its message. `redacted_exception`
gives a stand-in for recording, and `install_log_redaction` cleans every log record of the
process as it is created, so Prefect's and MLflow's handlers only ever see clean text.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import traceback
from collections.abc import Iterable
from typing import Any

__all__ = [
    "REDACTED",
    "configure_redaction",
    "contains_secret",
    "install_log_redaction",
    "redact_text",
    "redacted_exception",
    "remember_secret",
]

REDACTED = "***"

# Each pattern keeps a readable prefix in the group named `keep` and hides the rest.
_BUILTIN = [
    # A bearer token has a digit or a symbol: "Bearer token missing" stays readable.
    r"(?P<keep>\bBearer\s+)(?=[A-Za-z]*[0-9._~+/=\-])[A-Za-z0-9._~+/=\-]{6,}",
    r"(?P<keep>\bsk-)[A-Za-z0-9_\-]{6,}",
    r"(?P<keep>\bgh[pousr]_)[A-Za-z0-9]{16,}",
    r"(?P<keep>\bgithub_pat_)[A-Za-z0-9_]{16,}",
    r"(?P<keep>\b(?:AKIA|ASIA))[A-Z0-9]{16}\b",
    r"(?P<keep>\bxox[abprs]-)[A-Za-z0-9\-]{8,}",
    r"(?P<keep>\bAIza)[0-9A-Za-z_\-]{30,}",
    # name=value, name: value, 'name': 'value' — value up to a quote, space, comma or brace.
    r"(?P<keep>(?i:\b[\w.-]*?(?:api[_-]?key|access[_-]?key|secret[_-]?key|private[_-]?key"
    r"|secret|password|passwd|token|credentials?|authorization|auth[_-]?header))\b"
    r"['\"]?\s*[:=]\s*['\"]?)(?!\*\*\*)(?:(?:Bearer|Basic|Token)\s+)?[^\s'\",;}&)\]]{3,}",
]
_MIN_REMEMBERED = 6  # shorter values ("dev", "1234") would redact ordinary words
_MAX_REMEMBERED = 1000

_lock = threading.Lock()
_extra: list[str] = []
_remembered: set[str] = set()
_compiled: re.Pattern[str] | None = None
_log_redaction_installed = False


def configure_redaction(*, patterns: Iterable[str] = ()) -> None:
    """Add a project's own secret patterns (regular expressions) to the built-in ones.

    Replaces the patterns a previous call added. A match is replaced by ``***`` (or, if the
    pattern has a group named ``keep``, that group followed by ``***``). Also turns on log
    redaction for the process (`install_log_redaction`). Raises ``re.error`` for a bad pattern.
    """
    compiled = [re.compile(p) for p in patterns]  # fail here, naming the pattern, not later
    global _compiled
    with _lock:
        _extra[:] = [c.pattern for c in compiled]
        _compiled = None
    install_log_redaction()


def remember_secret(value: object) -> None:
    """Redact this value wherever it appears later (a parameter stored under a secret key)."""
    if not isinstance(value, str) or len(value.strip()) < _MIN_REMEMBERED:
        return
    global _compiled
    with _lock:
        if value in _remembered or len(_remembered) >= _MAX_REMEMBERED:
            return
        _remembered.add(value)
        _compiled = None


def redact_text(text: str) -> str:
    """``text`` with every credential-looking value replaced by ``***``."""
    if not text:
        return text
    return _pattern().sub(_replace, text)


def contains_secret(text: str) -> bool:
    """Whether `redact_text` would change ``text``."""
    return bool(text) and _pattern().search(text) is not None


def redacted_exception(error: BaseException) -> BaseException:
    """``error`` itself when its text holds no secret, else a stand-in safe to record.

    The stand-in has the same class name and module (so the type recorded is right), the
    redacted message, and, as a note, the redacted traceback of the whole chain (causes
    included): source lines in a traceback can hold a key too. It is never raised.
    """
    full = _format(error)
    if not contains_secret(full):
        return error
    stand_in = _stand_in_class(type(error))(redact_text(_message(error)))
    stand_in.__notes__ = [redact_text(full)]
    return stand_in


def install_log_redaction() -> None:
    """Redact every log record of this process as it is created (message and traceback).

    Works for every logger and handler (Prefect's console and API handlers, MLflow's, the
    user's), because it wraps the record factory rather than one handler. Idempotent.
    """
    global _log_redaction_installed
    with _lock:
        if _log_redaction_installed:
            return
        _log_redaction_installed = True
        previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        with contextlib.suppress(Exception):  # redaction must never lose a log record
            _redact_record(record)
        return record

    logging.setLogRecordFactory(factory)


# -- internals -----------------------------------------------------------------------------------


def _pattern() -> re.Pattern[str]:
    global _compiled
    compiled = _compiled
    if compiled is not None:
        return compiled
    with _lock:
        parts = [*_BUILTIN, *(f"(?:{p})" for p in _extra)]
        # Longest first, so a value that contains another remembered value is hidden whole.
        parts += [re.escape(v) for v in sorted(_remembered, key=len, reverse=True)]
        compiled = _compiled = re.compile("|".join(_renumbered(parts)))
    return compiled


def _renumbered(parts: list[str]) -> list[str]:
    """Give each `keep` group a unique name so the patterns can be joined into one."""
    return [p.replace("(?P<keep>", f"(?P<keep{i}>") for i, p in enumerate(parts)]


def _replace(match: re.Match[str]) -> str:
    for name, value in match.groupdict().items():
        if name.startswith("keep") and value is not None:
            return value + REDACTED
    return REDACTED


def _message(error: BaseException) -> str:
    try:
        return str(error)
    except Exception:
        return f"<{type(error).__name__} (str failed)>"


def _format(error: BaseException) -> str:
    try:
        return "".join(traceback.format_exception(error)).rstrip("\n")
    except Exception:
        return f"{type(error).__name__}: {_message(error)}"


_STAND_INS: dict[type[BaseException], type[Exception]] = {}


def _stand_in_class(cls: type[BaseException]) -> type[Exception]:
    """An ``Exception`` subclass named like ``cls`` (tracebacks print module.qualname)."""
    found = _STAND_INS.get(cls)
    if found is None:
        namespace = {"__module__": cls.__module__, "__qualname__": cls.__qualname__}
        found = _STAND_INS[cls] = type(cls.__name__, (Exception,), namespace)
    return found


def _redact_record(record: logging.LogRecord) -> None:
    message = record.getMessage()
    clean = redact_text(message)
    if clean != message:
        record.msg, record.args = clean, None
    if record.exc_info and record.exc_info[1] is not None:
        error = record.exc_info[1]
        stand_in = redacted_exception(error)
        if stand_in is not error:
            record.exc_text = stand_in.__notes__[0]  # type: ignore[attr-defined]
            stand_in.__notes__ = []  # type: ignore[attr-defined]
            record.exc_info = (type(stand_in), stand_in, None)
    if record.stack_info:
        record.stack_info = redact_text(record.stack_info)
