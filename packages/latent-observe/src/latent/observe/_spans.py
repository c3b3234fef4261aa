"""`span()`: MLflow tracing spans that nest, cross threads, and cost little when tracking is off."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from latent.observe._summary import summarize
from latent.observe._tracking import SpanNode, _current_span, enter_span, resolve

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

    def __init__(self, name: str, span_type: str, attributes: dict[str, Any]) -> None:
        self.name = name
        self.span_type = span_type
        self.attributes = attributes
        self.outputs: Any = None
        self._node: SpanNode | None = None

    @property
    def active(self) -> bool:
        """True when this span is recorded in MLflow (or will be, once the run is open)."""
        node = self._node
        return node is not None and (node.live is not None or node.pending)

    def set_outputs(self, value: Any) -> None:
        """Record the span's outputs as a bounded summary (see `summarize`).

        A value carrying LLM token usage (an OpenAI or Anthropic response, or a dict with a
        ``usage`` entry of that shape) also sets MLflow's token-usage attribute, which fills
        the Tokens column of MLflow's trace list.
        """
        self.outputs = summarize(value)
        usage = token_usage(value)
        if usage is not None:
            self._set_raw(TOKEN_USAGE_ATTRIBUTE, usage)

    def set_attribute(self, key: str, value: Any) -> None:
        """Set one attribute (summarised, secrets redacted); kept in `.attributes` too."""
        self._set_raw(key, summarize({key: value})[key])

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        """Set several attributes at once (see `set_attribute`)."""
        for key, value in attributes.items():
            self.set_attribute(key, value)

    def _set_raw(self, key: str, value: Any) -> None:
        self.attributes[key] = value
        if self._node is not None:
            self._node.set_attribute(key, value)

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
    Before the flow's MLflow run is open the span is kept and replayed with its own times.
    """
    validate_span_type(span_type)
    summary = summarize(dict(attributes or {}))
    handle = SpanHandle(name, span_type, summary if isinstance(summary, dict) else {})
    run, parent, fallback = resolve()
    if run is None or not run.recording or parent is None:
        yield handle
        return
    node = SpanNode(
        run,
        name=name,
        span_type=span_type,
        parent=parent,
        inputs=summarize(inputs) if inputs is not None else None,
        attributes=handle.attributes,
        fallback=fallback,
    )
    node.start()
    handle._node = node
    error: BaseException | None = None
    try:
        with enter_span(node), _current_span(node):
            yield handle
    except BaseException as exc:
        error = exc
        raise
    finally:
        node.end(handle.outputs, error)


def record_span(
    name: str,
    span_type: str = "CHAIN",
    *,
    inputs: Any = None,
    outputs: Any = None,
    attributes: Mapping[str, Any] | None = None,
) -> None:
    """A span that starts and ends now, under the current span: for work that did not run.

    `cached_span` and `cached_rows` use it; it costs what any span costs.
    """
    with span(name, span_type, inputs=inputs, attributes=attributes) as handle:
        if outputs is not None:
            handle.set_outputs(outputs)


# -- what a task span says -------------------------------------------------------------------

#: Span attribute keys Latent sets on task and row spans (one place, so the UI filters agree).
ATTR_CACHE = "latent.cache"  # "hit" | "miss" | "off"
ATTR_CACHE_KEY = "latent.cache.id"  # the cache key ("key" names are redacted as secrets)
ATTR_ROW_INDEX = "latent.row.index"
ATTR_ROW_ID = "latent.row.id"
ATTR_TASK_RUN_ID = "prefect.task_run.id"
ATTR_ATTEMPT = "latent.attempt"
ATTR_CACHED_ROWS = "latent.cached_rows"
#: MLflow's own attribute for token usage (``SpanAttributeKey.CHAT_USAGE``).
TOKEN_USAGE_ATTRIBUTE = "mlflow.chat.tokenUsage"
#: A cached map of more rows than this is one summary span instead of one span per row.
CACHED_SPANS_PER_MAP = 50


def task_attributes(
    *,
    cache: str | None = None,
    cache_key: str | None = None,
    row_index: int | None = None,
    row_id: Any = None,
    task_run_id: Any = None,
    attempt: int | None = None,
) -> dict[str, Any]:
    """The attributes of a task or row span, under Latent's keys; None values are left out."""
    values = {
        ATTR_CACHE: cache,
        ATTR_CACHE_KEY: cache_key,
        ATTR_ROW_INDEX: row_index,
        ATTR_ROW_ID: None if row_id is None else str(row_id),
        ATTR_TASK_RUN_ID: None if task_run_id is None else str(task_run_id),
        ATTR_ATTEMPT: attempt,
    }
    return {key: value for key, value in values.items() if value is not None}


def row_span_name(task: str, index: int | None, row_id: Any = None) -> str:
    """``answer_question[3]`` or ``answer_question[3] q-004``: rows told apart in the trace."""
    if index is None:
        return task if row_id is None else f"{task} {row_id}"
    return f"{task}[{index}]" if row_id is None else f"{task}[{index}] {row_id}"


def cached_span(
    task: str,
    span_type: str = "CHAIN",
    *,
    cache_key: str | None = None,
    row_index: int | None = None,
    row_id: Any = None,
    outputs: Any = None,
) -> None:
    """A short span marking one task call or row answered from the cache (it did not run)."""
    attributes = task_attributes(
        cache="hit", cache_key=cache_key, row_index=row_index, row_id=row_id
    )
    record_span(
        row_span_name(task, row_index, row_id),
        span_type,
        outputs=outputs,
        attributes=attributes,
    )


def cached_rows(
    task: str,
    rows: Sequence[tuple[int, Any]],
    *,
    total: int | None = None,
    span_type: str = "CHAIN",
    limit: int = CACHED_SPANS_PER_MAP,
) -> None:
    """The cached rows of one map, as (index, row id or None) pairs: a short span per row, or
    for more than `limit` rows one span ``<task> (N cached)`` with their count and index range.
    """
    if not rows:
        return
    if len(rows) <= limit:
        for index, row_id in rows:
            cached_span(task, span_type, row_index=index, row_id=row_id)
        return
    indices = [index for index, _ in rows]
    attributes: dict[str, Any] = {
        ATTR_CACHE: "hit",
        ATTR_CACHED_ROWS: len(rows),
        "latent.row.first": min(indices),
        "latent.row.last": max(indices),
    }
    if total is not None:
        attributes["latent.map.size"] = total
    record_span(f"{task} ({len(rows)} cached)", span_type, attributes=attributes)


def token_usage(value: Any) -> dict[str, int] | None:
    """Token counts of an OpenAI / Anthropic response (or a dict with such a ``usage``), in
    MLflow's shape ``{input_tokens, output_tokens, total_tokens}``; None when there are none."""
    usage = _get(value, "usage")
    if usage is None:
        return None
    inputs = _first_int(usage, "input_tokens", "prompt_tokens")
    outputs = _first_int(usage, "output_tokens", "completion_tokens")
    total = _first_int(usage, "total_tokens")
    if inputs is None and outputs is None and total is None:
        return None
    if total is None:
        total = (inputs or 0) + (outputs or 0)
    return {"input_tokens": inputs or 0, "output_tokens": outputs or 0, "total_tokens": total}


def _get(value: Any, key: str) -> Any:
    if isinstance(value, Mapping):
        return value.get(key)
    if value is None or isinstance(value, str | bytes | int | float | list | tuple):
        return None
    try:
        return getattr(value, key, None)
    except Exception:
        return None


def _first_int(usage: Any, *keys: str) -> int | None:
    for key in keys:
        found = _get(usage, key)
        if isinstance(found, int) and not isinstance(found, bool):
            return found
    return None
