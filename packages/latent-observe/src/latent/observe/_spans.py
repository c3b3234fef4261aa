"""`span()`: MLflow tracing spans that nest, cross threads, and cost little when tracking is off."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from latent.observe._summary import summarize
from latent.observe._tracking import SpanNode, _end_span, enter_span, resolve

#: MLflow's span types (``mlflow.entities.SpanType``), kept here so that validating a task's
#: span type at decoration time does not import MLflow. A test checks they still match.
SPAN_TYPES: frozenset[str] = frozenset(
    {
        "LLM",
        "CHAIN",
        "AGENT",
        "TOOL",
        "CHAT_MODEL",
        "RETRIEVER",
        "PARSER",
        "EMBEDDING",
        "RERANKER",
        "MEMORY",
        "UNKNOWN",
        "WORKFLOW",
        "TASK",
        "GUARDRAIL",
        "EVALUATOR",
    }
)


def validate_span_type(span_type: str) -> str:
    """Return `span_type` if MLflow knows it; raise ValueError naming the valid ones otherwise.

    Called when a task is decorated, so a typo fails at import, not hours into a run.
    """
    if span_type in SPAN_TYPES:
        return span_type
    valid = ", ".join(sorted(SPAN_TYPES))
    hint = f" (did you mean {span_type.upper()!r}?)" if span_type.upper() in SPAN_TYPES else ""
    raise ValueError(f"Unknown span type {span_type!r}{hint}; use one of: {valid}")


class SpanHandle:
    """What `span()` yields: set outputs and attributes; works the same when tracking is off."""

    def __init__(self, name: str, span_type: str, attributes: dict[str, Any], live: Any = None):
        self.name = name
        self.span_type = span_type
        self.attributes = attributes
        self.outputs: Any = None
        self._live = live

    @property
    def active(self) -> bool:
        """True when this span is recorded in MLflow."""
        return self._live is not None

    def set_outputs(self, value: Any) -> None:
        """Record the span's outputs as a bounded summary (see `summarize`)."""
        self.outputs = summarize(value)

    def set_attribute(self, key: str, value: Any) -> None:
        """Set one attribute (summarised, secrets redacted); kept in `.attributes` too."""
        summary = summarize({key: value})[key]
        self.attributes[key] = summary
        if self._live is not None:
            try:
                self._live.set_attribute(key, summary)
            except Exception:
                self._live = None  # a broken span must not break the task

    def __repr__(self) -> str:
        return f"SpanHandle(name={self.name!r}, span_type={self.span_type!r}, active={self.active})"


@contextmanager
def span(
    name: str,
    span_type: str = "CHAIN",
    *,
    inputs: Any = None,
    attributes: Mapping[str, Any] | None = None,
) -> Iterator[SpanHandle]:
    """A traced block under the active flow's trace (a working no-op when nothing is recorded).

    Inputs, outputs and attributes are stored as bounded summaries with secrets redacted. Nested
    spans nest; in a worker thread the span attaches to the flow's trace (see `_tracking`).
    """
    validate_span_type(span_type)
    summary = summarize(dict(attributes or {}))
    handle = SpanHandle(name, span_type, summary if isinstance(summary, dict) else {})
    run, parent, fallback = resolve()
    backend = run.backend if run is not None else None
    if run is None or backend is None or parent is None:
        yield handle
        return
    try:
        live = backend.start_span(
            name,
            span_type,
            parent=parent.live,
            inputs=summarize(inputs) if inputs is not None else None,
            attributes=handle.attributes,
        )
    except Exception as exc:
        run.degrade(f"MLflow could not start span '{name}' ({exc})")
        yield handle
        return
    handle._live = live
    node = SpanNode(live, run, fallback)
    error: BaseException | None = None
    try:
        with enter_span(node), backend.current_span(live):
            yield handle
    except BaseException as exc:
        error = exc
        raise
    finally:
        _end_span(run, live, handle.outputs, error)
