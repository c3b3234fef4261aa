"""Errors raised by latent.observe."""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from typing import Any

from latent.observe._summary import summarize


class TaskExecutionError(Exception):
    """A task failed; carries what is needed to understand why without re-running it.

    Raised by latent-prefect (``raise TaskExecutionError(...) from original``) so the traceback
    shows both. `inputs` and `attributes` are bounded summaries (see `summarize`), which keeps
    the error small and picklable: Prefect and Dask move exceptions across processes.
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
        self.context = dict(context or {})
        self.attributes = _summarize_mapping(attributes)
        super().__init__(self._message())

    def _message(self) -> str:
        if isinstance(self.original, _UnpicklableOriginal):
            kind = self.original.type_name
        else:
            kind = type(self.original).__name__
        detail = str(self.original)
        original = f"{kind}: {detail}" if detail else kind
        return (
            f"Task '{self.task_name}' failed.\n"
            f"Original error: {original}\n"
            f"Context: {self.context!r}"
        )

    def __str__(self) -> str:
        return self._message()

    def __reduce__(self) -> tuple[Any, ...]:
        kwargs = {"inputs": self.inputs, "context": self.context, "attributes": self.attributes}
        return (_rebuild, (self.task_name, _picklable(self.original), kwargs))


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
    """Stands in for an original exception that cannot be pickled, keeping type and message."""

    def __init__(self, type_name: str, message: str) -> None:
        super().__init__(message)
        self.type_name = type_name

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.type_name, str(self)))


def _picklable(original: BaseException) -> BaseException:
    try:
        pickle.dumps(original)
    except Exception:
        return _UnpicklableOriginal(type(original).__name__, str(original))
    return original


def _summarize_mapping(mapping: Mapping[str, Any] | None) -> dict[str, Any]:
    if not mapping:
        return {}
    summary = summarize(dict(mapping))
    return summary if isinstance(summary, dict) else {"value": summary}
