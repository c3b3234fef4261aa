"""Running one call of a task body: catalog input, span, params read, error context, output.

Every path that runs user code goes through `run` / `run_async` (a Prefect task run, a mapped
row in the row engine, a direct call outside any flow), so a call behaves the same wherever it
runs. The cache is asked before and told after by the caller (see `_task_cache`); retrying is
the caller's too: a failed attempt that may be retried re-raises the original exception, the
last one raises `TaskExecutionError` naming the task, its inputs and the row.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from latent.cache import CacheWriteError
from latent.config import DatasetError, LatentConfigError, Project, track_param_reads
from latent.observe import (
    TaskExecutionError,
    bind_names,
    log_dataset,
    log_table,
    span,
    summarize,
    task_attributes,
)
from latent.prefect.errors import TaskNotSelectedError

if TYPE_CHECKING:
    from latent.prefect._task import TaskSpec
    from latent.prefect._task_cache import TaskCache

#: Errors a retry cannot fix: bad configuration or data, and the final wrapped error.
NOT_RETRYABLE: tuple[type[BaseException], ...] = (
    CacheWriteError,  # disk full, read-only: a retry cannot help
    LatentConfigError,
    DatasetError,
    TaskExecutionError,
    TaskNotSelectedError,  # a task outside `--only/--from/--to` with nothing cached
)


@dataclass(frozen=True)
class Call:
    """One call of a task: its arguments by parameter name, where it runs, which row it is."""

    spec: TaskSpec
    project: Project
    catalog: Any
    parameters: dict[str, Any]
    row: int | None = None
    cache_key: str | None = None  # shown on the span (`latent.cache.id`)

    @property
    def label(self) -> str:
        """The span name: the task, and for a mapped row its index and `id`/`key` field."""
        if self.row is None:
            return self.spec.name
        ident = row_id(self.parameters)
        return f"{self.spec.name}[{self.row}]" + (f" {ident}" if ident is not None else "")


@dataclass(frozen=True)
class Ran:
    """What a successful call gives back to its caller."""

    value: Any
    duration_s: float
    reads: tuple[str, ...]
    output: dict[str, str] | None  # output fingerprint, for the cache record

    @property
    def rows_out(self) -> int | None:
        return length(self.value)


def run(call: Call, cache: TaskCache | None, *, final: bool, attempt: int | None = None) -> Ran:
    """Run a sync body once (see the module docstring for `final`)."""
    with _Attempt(call, cache, final=final, attempt=attempt) as this:
        this.returned(call.spec.fn(*this.args, **this.kwargs))
    return this.ran


async def run_async(
    call: Call, cache: TaskCache | None, *, final: bool, attempt: int | None = None
) -> Ran:
    """`run` for an `async def` body: the span covers the awaited body."""
    with _Attempt(call, cache, final=final, attempt=attempt) as this:
        this.returned(await call.spec.fn(*this.args, **this.kwargs))
    return this.ran


class _Attempt:
    """Around one call of a body: input loaded, names bound, params read tracked, a span timed;
    on success the output saved, on failure the error made retryable or final."""

    def __init__(
        self, call: Call, cache: TaskCache | None, *, final: bool, attempt: int | None
    ) -> None:
        self.call = call
        self.cache = cache
        self.final = final
        self.attempt = attempt
        arguments = _with_input(call)
        self.inputs = {k: summarize(v) for k, v in arguments.items()}
        self.args, self.kwargs = to_args_kwargs(call.spec.fn, arguments)
        self._stack = ExitStack()

    def __enter__(self) -> _Attempt:
        call, spec = self.call, self.call.spec
        self._stack.enter_context(bind_names(task=spec.name))
        self._reads = self._stack.enter_context(track_param_reads())
        attributes = _attributes(call, self.cache, self.attempt)
        self._span = self._stack.enter_context(
            span(call.label, spec.span_type, inputs=self.inputs, attributes=attributes)
        )
        self._started = time.perf_counter()
        return self

    def returned(self, value: Any) -> None:
        self._value = value
        self._duration = time.perf_counter() - self._started
        self._span.set_outputs(value)

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> bool:
        if isinstance(exc, Exception):
            failure = _failure(self.call, exc, self.inputs, self._span.attributes, final=self.final)
            try:
                self._stack.__exit__(type(failure), failure, tb)
            finally:
                if failure is not exc:
                    raise failure from exc
            return False
        if exc is not None:  # KeyboardInterrupt, cancellation: as it is
            return bool(self._stack.__exit__(kind, exc, tb))
        self._stack.__exit__(None, None, None)
        output = _save_output(self.call, self.cache, self._value)  # names/reads: closed above
        self.ran = Ran(self._value, self._duration, tuple(sorted(self._reads)), output)
        return False


def _attributes(call: Call, cache: TaskCache | None, attempt: int | None) -> dict[str, Any]:
    """What the span says: cache miss and key, row index and id, Prefect task run, attempt."""
    from prefect.context import TaskRunContext

    task_run = getattr(TaskRunContext.get(), "task_run", None)
    if attempt is None and task_run is not None:
        attempt = task_run.run_count or 1
    return task_attributes(
        cache="off" if cache is None else "miss",
        cache_key=call.cache_key,
        row_index=call.row,
        row_id=row_id(call.parameters) if call.row is not None else None,
        task_run_id=task_run.id if task_run is not None else None,
        attempt=attempt,
    )


def retryable(exc: BaseException) -> bool:
    return not isinstance(exc, NOT_RETRYABLE)


def _failure(
    call: Call,
    exc: Exception,
    inputs: dict[str, Any],
    attributes: Mapping[str, Any],
    *,
    final: bool,
) -> BaseException:
    """The original error when it may be retried, else `TaskExecutionError` with context."""
    if not final and retryable(exc):
        return exc
    context = {"input": call.spec.input, "row_index": call.row}
    return TaskExecutionError(
        call.spec.name, exc, inputs=inputs, context=context, attributes=attributes
    )


def _with_input(call: Call) -> dict[str, Any]:
    spec = call.spec
    arguments = dict(call.parameters)
    if spec.input is None or spec.input_param is None:
        return arguments
    if arguments.get(spec.input_param) is None:
        arguments[spec.input_param] = call.catalog.get(spec.input).load()
    return arguments


def _save_output(call: Call, cache: TaskCache | None, value: Any) -> dict[str, str] | None:
    spec = call.spec
    if spec.output is None:
        return None
    catalog = call.catalog
    dataset = catalog.get(spec.output) if catalog.has(spec.output) else None
    if dataset is None:
        dataset = catalog.default_for(spec.output, value)
    dataset.save(value)
    fingerprint = cache.output_fingerprint(spec, dataset) if cache is not None else None
    if call.row is None:  # a mapped row's output is one piece of it: not a dataset of its own
        _record_output(spec.output, dataset, value, fingerprint)
    return fingerprint


def _record_output(name: str, dataset: Any, value: Any, fingerprint: dict[str, str] | None) -> None:
    """In the flow's MLflow run: a DataFrame output as a table, the dataset with its digest."""
    cls = type(value)
    if cls.__module__.startswith("pandas") and cls.__name__ == "DataFrame":
        log_table(value, name)
    paths = dataset.paths()
    if fingerprint and paths:
        log_dataset(name, paths[0], fingerprint[name], context="output", rows=length(value))


def to_args_kwargs(fn: Callable[..., Any], arguments: Mapping[str, Any]) -> tuple[list[Any], dict]:
    """Positional and keyword arguments for `fn` from arguments keyed by parameter name."""
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    for name, parameter in _parameters(fn).items():
        if name not in arguments:
            continue
        value = arguments[name]
        if parameter.kind is parameter.POSITIONAL_ONLY:
            args.append(value)
        elif parameter.kind is parameter.VAR_POSITIONAL:
            args.extend(value)
        elif parameter.kind is parameter.VAR_KEYWORD:
            kwargs.update(value)
        else:
            kwargs[name] = value
    return args, kwargs


def call_arguments(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> dict[str, Any]:
    """`fn(*args, **kwargs)`'s arguments keyed by parameter name, defaults applied (partial:
    the catalog fills the `input` parameter later)."""
    bound = _signature(fn).bind_partial(*args, **kwargs)
    bound.apply_defaults()
    return dict(bound.arguments)


def _parameters(fn: Callable[..., Any]) -> Mapping[str, inspect.Parameter]:
    return _signature(fn).parameters


_signatures: dict[Any, inspect.Signature] = {}


def _signature(fn: Callable[..., Any]) -> inspect.Signature:
    found = _signatures.get(fn)
    if found is None:
        found = _signatures[fn] = inspect.signature(fn)
    return found


def row_id(parameters: Mapping[str, Any]) -> str | None:
    """The `id` or `key` field of a mapped row's first dict-like argument, if it has one."""
    for value in parameters.values():
        getter = getattr(value, "get", None)
        if isinstance(value, Mapping) and callable(getter):
            for field_name in ("id", "key"):
                found = getter(field_name)
                if isinstance(found, (str, int)):
                    return str(found)
    return None


def length(value: Any) -> int | None:
    if value is None or isinstance(value, (str, bytes)):
        return None
    try:
        return len(value)
    except TypeError:
        return None
