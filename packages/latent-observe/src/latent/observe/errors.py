"""Errors raised by latent.observe."""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from typing import Any

from latent.observe._redact import contains_secret, redact_text
from latent.observe._summary import redact, summarize


class SettingsError(ValueError):
    """An environment variable latent-observe reads has a value it does not accept (e.g.
    ``LATENT_MLFLOW_ENABLED=maybe``); the message names the variable and the values it takes."""


class TaskExecutionError(Exception):
    """A task failed; carries what is needed to understand why without re-running it.

    Raised by latent-prefect (``raise TaskExecutionError(...) from original``) so the traceback
    shows both. `inputs` and `attributes` are bounded summaries (see `summarize`), which keeps
    the error small and picklable: Prefect and Dask move exceptions across processes.

    Its message is recorded (Prefect's state, logs, MLflow), so credentials in the original's
    text are redacted there (``Bearer ***``); `original` and ``__cause__`` stay untouched for the
    code that catches it. A pickled copy (a result file, another process) carries a redacted
    stand-in of the original instead, so no secret is written to disk.
    """

    task_name: str
    original: BaseException
    inputs: dict[str, Any]
    context: dict[str, Any]
    attributes: dict[str, Any]

    def __init__(
        self,
        task_name: str,
        original: BaseException,
        *,
        inputs: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> None:
        self.task_name = task_name
        self.original = original
        self.inputs = _summarize_mapping(inputs)
        self.context = redact(dict(context or {}))
        self.attributes = _summarize_mapping(attributes)
        super().__init__(self._message())

    def _message(self) -> str:
        if isinstance(self.original, _UnpicklableOriginal):
            kind = self.original.type_name
        else:
            kind = type(self.original).__name__
        detail = redact_text(str(self.original))
        original = f"{kind}: {detail}" if detail else kind
        return (
            f"Task '{self.task_name}' failed.\n"
            f"Original error: {original}\n"
            f"Context: {redact_text(repr(self.context))}"
        )

    def __str__(self) -> str:
        return self._message()

    def __reduce__(self) -> tuple[Any, ...]:
        kwargs = {"inputs": self.inputs, "context": self.context, "attributes": self.attributes}
        return (_rebuild, (self.task_name, _recordable(self.original), kwargs))


def _rebuild(task_name: str, original: BaseException, kwargs: dict[str, Any]) -> TaskExecutionError:
    """Unpickle helper: keyword-only arguments cannot travel through `__reduce__` directly."""
    error = TaskExecutionError.__new__(TaskExecutionError)
    error.task_name = task_name
    error.original = original
    error.inputs = kwargs["inputs"]
    error.context = kwargs["context"]
    error.attributes = kwargs["attributes"]
    Exception.__init__(error, error._message())
    return error


class _UnpicklableOriginal(Exception):
    """Stands in for an original that cannot be pickled or would carry a secret: type + message."""

    def __init__(self, type_name: str, message: str) -> None:
        super().__init__(message)
        self.type_name = type_name

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.type_name, str(self)))


def _recordable(original: BaseException) -> BaseException:
    """The original if it pickles and its pickle holds no secret, else a stand-in with its text."""
    try:
        data = pickle.dumps(original)
    except Exception:
        return _UnpicklableOriginal(type(original).__name__, redact_text(str(original)))
    # Attributes count too (an HTTP error's request headers): look at everything pickled.
    if contains_secret(data.decode("latin-1")):
        return _UnpicklableOriginal(type(original).__name__, redact_text(str(original)))
    return original


def _summarize_mapping(mapping: Mapping[str, Any] | None) -> dict[str, Any]:
    if not mapping:
        return {}
    summary = summarize(dict(mapping))
    return summary if isinstance(summary, dict) else {"value": summary}
