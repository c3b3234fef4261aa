"""Value-based redaction: credentials in text are hidden wherever Latent records them."""

from __future__ import annotations

import io
import logging
import pickle
import re

import pytest

from latent.observe import TaskExecutionError, configure_redaction, redact, redact_text, summarize
from latent.observe._redact import redacted_exception

LEAK = "HTTP 401 headers={'Authorization': 'Bearer sk-test-123456'}"


@pytest.fixture(autouse=True)
def _no_extra_patterns() -> None:
    configure_redaction(patterns=())


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        (LEAK, "sk-test-123456"),
        ("curl -H 'Authorization: Bearer eyJhbGciOi.eyJzdWIi.sig'", "eyJhbGciOi"),
        ("openai key sk-proj-AbCdEf123456 rejected", "AbCdEf123456"),
        ("token ghp_0123456789abcdefghijABCD revoked", "0123456789abcdefghij"),
        ("AWS AKIAIOSFODNN7EXAMPLE denied", "IOSFODNN7EXAMPLE"),
        ("login failed: password=hunter2x", "hunter2x"),
        ('{"api_key": "abc123def"}', "abc123def"),
        ("aws_secret_access_key=wJalrXUtnFEMI/K7MDENG", "wJalrXUtnFEMI"),
        ("auth_header='Basic dXNlcjpwYXNz'", "dXNlcjpwYXNz"),
    ],
)
def test_credential_shaped_values_are_redacted(text: str, secret: str) -> None:
    clean = redact_text(text)
    assert secret not in clean
    assert "***" in clean
    assert redact_text(clean) == clean  # idempotent


@pytest.mark.parametrize(
    "text",
    [
        "max_tokens=100 token_count=5",
        "KeyError: 'api'",
        "Bearer token missing",
        "risk-assessment task-123456",
        "sk-short",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert redact_text(text) == text


def test_values_of_secret_keys_are_hidden_wherever_they_appear_later() -> None:
    assert redact({"llm": {"auth": "plain", "api_key": "my-own-key-42"}})["llm"]["api_key"] == "***"
    assert redact_text("server echoed my-own-key-42 back") == "server echoed *** back"


def test_a_project_can_add_patterns() -> None:
    assert redact_text("internal id ACME-SECRET-9f8e7d") == "internal id ACME-SECRET-9f8e7d"
    configure_redaction(patterns=[r"ACME-SECRET-\w+"])
    assert redact_text("internal id ACME-SECRET-9f8e7d") == "internal id ***"
    with pytest.raises(re.error):
        configure_redaction(patterns=["(unclosed"])


def test_summaries_redact_by_value_under_any_key() -> None:
    summary = summarize({"auth_header": "Bearer sk-test-123456", "headers": {"X": LEAK}})
    assert "sk-test-123456" not in repr(summary)


def _failed_task() -> TaskExecutionError:
    try:
        try:
            raise RuntimeError(LEAK)
        except RuntimeError as exc:
            raise TaskExecutionError("call_api", exc, context={"note": LEAK}) from exc
    except TaskExecutionError as error:
        return error


def test_task_error_text_is_redacted_but_the_original_is_untouched() -> None:
    error = _failed_task()
    assert "sk-test-123456" not in str(error) and "HTTP 401" in str(error)
    assert "sk-test-123456" in str(error.__cause__)
    assert error.original is error.__cause__


def test_a_pickled_task_error_carries_no_secret() -> None:
    error = _failed_task()
    data = pickle.dumps(error)
    assert b"sk-test-123456" not in data
    copy = pickle.loads(data)
    assert "HTTP 401" in str(copy) and "RuntimeError" in str(copy)


def test_recorded_exception_stand_in_hides_message_and_source_lines() -> None:
    error = _failed_task()
    stand_in = redacted_exception(error)
    assert type(stand_in).__name__ == "TaskExecutionError"
    notes = "".join(getattr(stand_in, "__notes__", []))
    assert "raise RuntimeError(LEAK)" in notes  # the traceback is kept...
    assert "sk-test-123456" not in str(stand_in) + notes  # ...without the token
    clean = ValueError("nothing to hide")
    assert redacted_exception(clean) is clean


def test_log_records_are_redacted_for_every_handler() -> None:
    configure_redaction(patterns=())  # installs the record factory
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    log = logging.getLogger("some.library")
    log.addHandler(handler)
    try:
        log.error("request failed: %s", LEAK)
        try:
            raise RuntimeError(LEAK)
        except RuntimeError:
            log.exception("call failed")
    finally:
        log.removeHandler(handler)
    text = stream.getvalue()
    assert "request failed: HTTP 401" in text and "Traceback" in text
    assert "sk-test-123456" not in text


def test_warnings_printed_to_stderr_are_redacted() -> None:
    import warnings

    configure_redaction(patterns=())
    # What Python prints for a warning is warnings.formatwarning's text.
    text = warnings.formatwarning(f"retrying after {LEAK}", RuntimeWarning, "flow.py", 3)
    assert "retrying after HTTP 401" in text and "sk-test-123456" not in text
