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
import warnings
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

# (triggers, pattern): a pattern runs only on text holding one of its (lower-case) triggers, so
# most log lines cost a few substring tests. Each keeps a readable prefix in its `keep` group.
_BUILTIN: list[tuple[tuple[str, ...], str]] = [
    # A bearer token has a digit or a symbol: "Bearer token missing" stays readable.
    (("bearer",), r"(?P<keep>\bBearer\s+)(?=[A-Za-z]*[0-9._~+/=\-])[A-Za-z0-9._~+/=\-]{6,}"),
    (("sk-",), r"(?P<keep>\bsk-)[A-Za-z0-9_\-]{6,}"),
    (("gh",), r"(?P<keep>\bgh[pousr]_)[A-Za-z0-9]{16,}"),
    (("github_pat_",), r"(?P<keep>\bgithub_pat_)[A-Za-z0-9_]{16,}"),
    (("akia", "asia"), r"(?P<keep>\b(?:AKIA|ASIA))[A-Z0-9]{16}\b"),
    (("xox",), r"(?P<keep>\bxox[abprs]-)[A-Za-z0-9\-]{8,}"),
    (("aiza",), r"(?P<keep>\bAIza)[0-9A-Za-z_\-]{30,}"),
    # name=value, name: value, 'name': 'value' — value up to a quote, space, comma or brace.
    (
        ("key", "secret", "passw", "token", "credential", "authori", "auth"),
        # (?i) for the whole pattern plus a first-letter lookahead: twice as fast as (?i:...).
        r"(?i)(?P<keep>(?=[apstc])(?:api[_-]?key|access[_-]?key|secret[_-]?key|private[_-]?key"
        r"|secret|password|passwd|token|credentials?|authorization|auth[_-]?header)"
        r"\b['\"]?\s*[:=]\s*['\"]?)(?!\*\*\*)(?:(?:bearer|basic|token)\s+)?[^\s'\",;}&)\]]{3,}",
    ),
]
_COMPILED_BUILTIN = [(triggers, re.compile(pattern)) for triggers, pattern in _BUILTIN]
_MIN_REMEMBERED = 6  # shorter values ("dev", "1234") would redact ordinary words
_MAX_REMEMBERED = 1000

_lock = threading.Lock()
_extra: list[re.Pattern[str]] = []
_remembered: set[str] = set()
_remembered_longest_first: list[str] = []
_log_redaction_installed = False


def configure_redaction(*, patterns: Iterable[str] = ()) -> None:
    """Add a project's own secret patterns (regular expressions) to the built-in ones.

    Replaces the patterns a previous call added. A match is replaced by ``***`` (or, if the
    pattern has a group named ``keep``, that group followed by ``***``). Also turns on log
    redaction for the process (`install_log_redaction`). Raises ``re.error`` for a bad pattern.
    """
    compiled = [re.compile(p) for p in patterns]  # fail here, naming the pattern, not later
    with _lock:
        _extra[:] = compiled
    install_log_redaction()


def remember_secret(value: object) -> None:
    """Redact this value wherever it appears later (a parameter stored under a secret key)."""
    if not isinstance(value, str) or len(value.strip()) < _MIN_REMEMBERED:
        return
    with _lock:
        if value in _remembered or len(_remembered) >= _MAX_REMEMBERED:
            return
        _remembered.add(value)
        # Longest first, so a value that contains another remembered one is hidden whole.
        _remembered_longest_first[:] = sorted(_remembered, key=len, reverse=True)


def redact_text(text: str) -> str:
    """``text`` with every credential-looking value replaced by ``***``."""
    if not text:
        return text
    lower = text.lower()
    for triggers, pattern in _COMPILED_BUILTIN:
        if any(trigger in lower for trigger in triggers):
            text = pattern.sub(_replace, text)
    for pattern in _extra:
        text = pattern.sub(_replace, text)
    for value in _remembered_longest_first:
        if value in text:
            text = text.replace(value, REDACTED)
    return text


def contains_secret(text: str) -> bool:
    """Whether `redact_text` would change ``text``."""
    return redact_text(text) != text


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
    """Redact every log record of this process as it is created (message and traceback), and
    every warning printed to stderr.

    Works for every logger and handler (Prefect's console and API handlers, MLflow's, the
    user's), because it wraps the record factory rather than one handler; warnings go through
    ``warnings.formatwarning``. Idempotent.
    """
    global _log_redaction_installed
    with _lock:
        if _log_redaction_installed:
            return
        _log_redaction_installed = True
        previous = logging.getLogRecordFactory()
        format_warning = warnings.formatwarning

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        with contextlib.suppress(Exception):  # redaction must never lose a log record
            _redact_record(record)
        return record

    def formatwarning(*args: Any, **kwargs: Any) -> str:
        return redact_text(format_warning(*args, **kwargs))

    logging.setLogRecordFactory(factory)
    warnings.formatwarning = formatwarning


# -- internals -----------------------------------------------------------------------------------


def _replace(match: re.Match[str]) -> str:
    keep = match.groupdict().get("keep")
    return REDACTED if keep is None else keep + REDACTED


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
