"""`@task`: a Prefect task that loads and saves catalog data, caches correctly and reports.

Prefect runs the task; Latent gives it a body wrapper (catalog I/O, span, metrics, error context,
registry) and a cache policy whose key comes from latent-cache. `.map` / `.submit` first look keys
up in the very result store that the policy writes, so a cached row costs a file read instead of
a Prefect task run, and large fan-out is throttled so the embedded server keeps up.
"""

from __future__ import annotations

import collections
import contextvars
import copy
import functools
import inspect
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any, Generic, ParamSpec, TypeVar

from latent.cache import code_signature
from latent.config import (
    DatasetError,
    LatentConfigError,
    Project,
    bind_run,
    current_run,
    track_param_reads,
)
from latent.observe import (
    TaskExecutionError,
    bind_names,
    continue_trace,
    logger,
    record_task,
    span,
    summarize,
    validate_span_type,
)
from latent.prefect import _keys, _runtime, _shipped, _summary
from latent.prefect._futures import CachedFuture
from latent.prefect._runtime import optional_parameter, resolved_signature
from latent.prefect.errors import FlowDefinitionError
from latent.registry import TaskRegistry
from prefect import Task
from prefect.context import FlowRunContext, TaskRunContext
from prefect.futures import PrefectFuture, PrefectFutureList
from prefect.utilities.callables import expand_mapping_parameters, get_call_parameters

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_RETRIES = 3
DEFAULT_RETRY_DELAYS = [1.0, 2.0, 4.0]

# Index of the current call inside a `.map`, for error context ("row_index").
_map_index: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "latent_map_index", default=None
)


@dataclass(frozen=True)
class TaskSpec:
    """What `@task(...)` was given, resolved once at decoration time."""

    name: str
    fn: Callable[..., Any]
    input: str | None
    input_param: str | None
    output: str | None
    cache: bool
    cache_expiration: timedelta | None
    span_type: str
    max_in_flight: int | None
    signature: str


def task(
    name: str | Callable[..., Any] | None = None,
    *,
    input: str | None = None,
    output: str | None = None,
    cache: bool = True,
    retry: bool = True,
    span_type: str = "CHAIN",
    cache_expiration: timedelta | None = timedelta(days=7),
    max_in_flight: int | None = None,
    **task_kwargs: Any,
) -> Any:
    """Make a function a Latent task (see the module docstring and the docs page).

    `name` defaults to the function's name; `max_in_flight` bounds the task runs one `.map` keeps
    in flight (default: `[prefect] max_in_flight` in latent.toml, else sized to the machine).
    """
    if callable(name):
        return task()(name)

    def decorate(fn: Callable[P, R]) -> LatentTask[P, R]:
        spec = _make_spec(
            fn,
            name or fn.__name__,
            input,
            output,
            cache,
            span_type,
            cache_expiration,
            max_in_flight,
        )
        options = _prefect_options(spec, retry, task_kwargs)
        return LatentTask(fn=_body(spec), spec=spec, **options)

    return decorate


def _make_spec(
    fn: Callable[..., Any],
    name: str,
    input: str | None,
    output: str | None,
    cache: bool,
    span_type: str,
    cache_expiration: timedelta | None,
    max_in_flight: int | None,
) -> TaskSpec:
    if not isinstance(name, str) or not name:
        raise FlowDefinitionError(f"@task needs a name string; got {name!r}")
    try:
        validated_type = validate_span_type(span_type)
    except ValueError as exc:
        raise FlowDefinitionError(f"@task('{name}'): {exc}") from None
    return TaskSpec(
        name=name,
        fn=fn,
        input=input,
        input_param=_input_param(fn, name, input),
        output=output,
        cache=cache,
        cache_expiration=cache_expiration,
        span_type=validated_type,
        max_in_flight=max_in_flight,
        signature=code_signature(fn),
    )


def _input_param(fn: Callable[..., Any], name: str, input: str | None) -> str | None:
    """The parameter that receives the `input` dataset: same name as the dataset, else the first."""
    if input is None:
        return None
    names = list(inspect.signature(fn).parameters)
    if not names:
        raise FlowDefinitionError(
            f"@task('{name}', input='{input}'): the function takes no parameter to receive the "
            f"dataset; add one, e.g. def {fn.__name__}({input.split('.')[-1]}): ..."
        )
    short = input.split(".")[-1]
    return short if short in names else names[0]


def _prefect_options(spec: TaskSpec, retry: bool, task_kwargs: dict[str, Any]) -> dict[str, Any]:
    options: dict[str, Any] = {"name": spec.name}
    if retry:
        options["retries"] = DEFAULT_RETRIES
        options["retry_delay_seconds"] = DEFAULT_RETRY_DELAYS
        options["retry_condition_fn"] = _worth_retrying
    else:
        options["retries"] = 0
    if spec.cache:
        options["cache_policy"] = _keys.LatentCachePolicy(spec=spec)
        options["cache_expiration"] = spec.cache_expiration
        options["persist_result"] = True
    else:
        from prefect.cache_policies import NO_CACHE

        options["cache_policy"] = NO_CACHE
    options.update(task_kwargs)  # the user's retries=, retry_delay_seconds=, ... win
    return options


# Errors a retry cannot fix: bad configuration or data, and the final wrapped error.
_NOT_RETRYABLE: tuple[type[BaseException], ...] = (
    LatentConfigError,
    DatasetError,
    TaskExecutionError,
)


def _worth_retrying(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect retry condition: retry flaky failures (network, rate limits), not bad input."""
    try:
        exc = state.result(raise_on_failure=False)
    except Exception:
        return True
    return not isinstance(exc, _NOT_RETRYABLE)


def _count_future_if_cached(future: Any) -> None:
    """Done-callback: the final state is on the wrapped future; `future.state` would ask the
    server (a client per call and a round trip per row, which swamped the server at 10k rows)."""
    wrapped = getattr(future, "wrapped_future", None)
    try:
        state = wrapped.result() if wrapped is not None else None
    except Exception:
        return
    if state is not None and hasattr(state, "state_details"):
        _count_if_cached(state)


def _count_if_cached(state: Any) -> None:
    """Count a Prefect-side cache hit (the body did not run) in metrics and the summary."""
    task_run_id = getattr(state.state_details, "task_run_id", None)
    _keys.pending_keys.pop(task_run_id, None)
    if state.name != "Cached":
        return
    name = _keys.task_name_of(task_run_id) or "?"
    record_task(name, duration_s=0.0, success=True, cached=True)
    _summary.summarize_task(name, "Cached", 0.0)


def _body(spec: TaskSpec) -> Callable[..., Any]:
    """The function Prefect runs: the user's, wrapped in Latent's run-time behaviour."""

    @functools.wraps(spec.fn)
    def body(*args: Any, **kwargs: Any) -> Any:
        return _run_body(spec, args, kwargs)

    sig = resolved_signature(spec.fn)
    if spec.input_param is not None:
        params = [
            optional_parameter(p) if p.name == spec.input_param and p.default is p.empty else p
            for p in sig.parameters.values()
        ]
        # a parameter with a default cannot precede one without; give those None as well
        seen_default = False
        fixed = []
        for p in params:
            if p.default is not p.empty:
                seen_default = True
            elif seen_default and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
                p = optional_parameter(p)
            fixed.append(p)
        sig = sig.replace(parameters=fixed)
    body.__signature__ = sig  # type: ignore[attr-defined]
    return body


def _run_body(spec: TaskSpec, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    ctx = TaskRunContext.get()
    shipped = getattr(ctx.task, "shipped_run", None) if ctx is not None else None
    if shipped is not None and current_run() is None:  # a worker process of Dask, Ray...
        with (
            bind_run(shipped.rebuild()),
            bind_names(flow=shipped.flow),
            continue_trace(shipped.trace),
        ):
            result, outcome = _execute(spec, ctx, args, kwargs)
        return outcome.state(result)  # the flow's process records it (see `_shipped`)
    result, outcome = _execute(spec, ctx, args, kwargs)
    _shipped.record(spec.name, outcome)
    return result


def _execute(
    spec: TaskSpec, ctx: TaskRunContext | None, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[Any, _shipped.Outcome]:
    """Load the input, call the function in its span, save the output, remember the key."""
    parts = _keys.pending_keys.pop(ctx.task_run.id, None) if ctx is not None else None
    run = current_run()
    project = run.project if run is not None else _runtime.project_for(spec.fn)
    bound = _signature(spec.fn).bind_partial(*args, **kwargs)
    _load_input(spec, project, bound)
    with bind_names(task=spec.name):
        with track_param_reads() as reads:
            result, duration = _call_in_span(spec, bound)
        _save_output(spec, project, result)
    if parts is not None:
        _after_cached_run(spec, project, parts, tuple(sorted(reads)), result)
    outcome = _shipped.Outcome(
        duration_s=duration,
        rows_in=_length(next(iter(bound.arguments.values()), None)),
        rows_out=_length(result),
    )
    return result, outcome


def _call_in_span(spec: TaskSpec, bound: inspect.BoundArguments) -> tuple[Any, float]:
    inputs = {k: summarize(v) for k, v in bound.arguments.items()}
    with span(spec.name, spec.span_type, inputs=inputs) as sp:
        started = time.perf_counter()
        try:
            result = spec.fn(*bound.args, **bound.kwargs)
        except Exception as exc:
            duration = time.perf_counter() - started
            record_task(spec.name, duration_s=duration, success=False)
            _raise_with_context(spec, exc, inputs, sp.attributes)
        duration = time.perf_counter() - started
        sp.set_outputs(result)
        return result, duration


def _raise_with_context(
    spec: TaskSpec, exc: Exception, inputs: dict[str, Any], attributes: dict[str, Any]
) -> None:
    """Re-raise for Prefect to retry, or, on the last attempt, as `TaskExecutionError`."""
    ctx = TaskRunContext.get()
    if ctx is not None and not isinstance(exc, _NOT_RETRYABLE):
        attempt = ctx.task_run.run_count or 1
        attempts = (ctx.task.retries or 0) + 1
        if attempt < attempts:
            logger.warning(
                f"Task '{spec.name}' attempt {attempt}/{attempts} failed with "
                f"{type(exc).__name__}: {exc}; retrying"
            )
            raise exc
    _summary.summarize_task(spec.name, "Failed", 0.0)
    context = {"input": spec.input, "row_index": _map_index.get()}
    raise TaskExecutionError(
        spec.name, exc, inputs=inputs, context=context, attributes=attributes
    ) from exc


def _load_input(spec: TaskSpec, project: Project, bound: inspect.BoundArguments) -> None:
    if spec.input is None or spec.input_param is None:
        return
    if bound.arguments.get(spec.input_param) is not None:
        return
    bound.arguments[spec.input_param] = _keys.catalog_for(project).get(spec.input).load()


def _save_output(spec: TaskSpec, project: Project, result: Any) -> None:
    if spec.output is None:
        return
    catalog = _keys.catalog_for(project)
    dataset = catalog.get(spec.output) if catalog.has(spec.output) else None
    if dataset is None:
        dataset = catalog.default_for(spec.output, result)
    dataset.save(result)
    if spec.cache:
        _keys.remember_output(project, dataset.paths())


def _after_cached_run(
    spec: TaskSpec, project: Project, parts: _keys.KeyParts, reads: tuple[str, ...], result: Any
) -> None:
    """Record which params the task read; store the result under the key that covers them."""
    run = current_run()
    _keys.remember_entry(project, parts.key, run.flow if run else None, spec.name)
    if reads == parts.reads:
        return
    _keys.remember_reads(project, parts.base, reads)
    key = _keys.with_reads(parts.base, reads)
    _runtime.result_store(project).write(
        obj=result, key=key, expiration=_keys.expiration_of(spec.cache_expiration)
    )
    _keys.remember_entry(project, key, run.flow if run else None, spec.name)


def _length(value: Any) -> int | None:
    if value is None or isinstance(value, (str, bytes)):
        return None
    try:
        return len(value)
    except TypeError:
        return None


class LatentTask(Task[P, R], Generic[P, R]):
    """A Prefect `Task` with Latent's catalog I/O, caching fast path and reporting."""

    def __init__(self, *args: Any, spec: TaskSpec | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.spec = spec
        self.shipped_run: _shipped.ShippedRun | None = None

    def _for_runner(self, runner: Any) -> LatentTask[P, R]:
        """This task, or a copy carrying the flow's run when the runner crosses processes."""
        run = current_run()
        if run is None or runner is None or _shipped.runs_in_this_process(runner):
            return self
        _shipped.ship_by_value(self.fn.__module__)
        if self.spec is not None:
            _shipped.ship_by_value(self.spec.fn.__module__)
        shipped = copy.copy(self)
        shipped.shipped_run = _shipped.ShippedRun.of(run)
        return shipped

    def with_options(self, **kwargs: Any) -> LatentTask[P, R]:
        new = super().with_options(**kwargs)
        assert isinstance(new, LatentTask)
        new.spec = replace(self.spec, name=new.name) if self.spec else None
        if self.spec and self.spec.cache and isinstance(new.cache_policy, _keys.LatentCachePolicy):
            new.cache_policy = _keys.LatentCachePolicy(spec=new.spec)  # type: ignore[assignment]
        return new

    # -- calling ------------------------------------------------------------------------------

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """In a flow: a Prefect task run. Outside any flow: the function, with caching."""
        self._register()
        if FlowRunContext.get() is None and TaskRunContext.get() is None:
            if kwargs.get("return_state"):
                return super().__call__(*args, **kwargs)
            return self._call_direct(args, kwargs)
        if kwargs.get("return_state") or self.spec is None or not self.spec.cache:
            return super().__call__(*args, **kwargs)
        state = super().__call__(*args, return_state=True, **kwargs)
        _count_if_cached(state)
        return state.result()

    def _call_direct(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        spec = self._require_spec()
        project = _runtime.project_for(spec.fn)
        parameters = get_call_parameters(self.fn, args, kwargs, apply_defaults=True)
        parts = _keys.compute(spec, project, parameters) if spec.cache else None
        if parts is not None and not parts.fresh:
            hit = _runtime.read_result(project, parts.key)
            if hit is not _runtime.MISS:
                record_task(spec.name, duration_s=0.0, success=True, cached=True)
                _summary.summarize_task(spec.name, "Cached", 0.0)
                return hit
        result = _run_body(spec, args, kwargs)
        if parts is not None:
            store = _runtime.result_store(project)
            store.write(
                obj=result, key=parts.key, expiration=_keys.expiration_of(spec.cache_expiration)
            )
            _keys.remember_entry(project, parts.key, None, spec.name)
        return result

    def submit(self, *args: Any, **kwargs: Any) -> Any:
        """Like Prefect's `submit`; a cached call returns a finished future with no task run."""
        self._register()
        flow_ctx = FlowRunContext.get()
        target = self._for_runner(getattr(flow_ctx, "task_runner", None))
        if kwargs.get("return_state") or kwargs.get("wait_for") or not self._fast_path_ok():
            future = Task.submit(target, *args, **kwargs)
        else:
            parameters = get_call_parameters(self.fn, args, kwargs, apply_defaults=True)
            cached = self._lookup(parameters)
            if cached is not None:
                return cached
            future = Task.submit(target, *args, **kwargs)
        if isinstance(future, PrefectFuture):
            self._account(future, shipped=target is not self)
        return future

    def _account(self, future: PrefectFuture[Any], *, shipped: bool) -> None:
        """Count what a submitted run did once it finishes: all of it when it ran elsewhere."""
        if shipped:
            _shipped.account_when_done(future, self._require_spec().name)
        elif self._fast_path_ok():
            future.add_done_callback(_count_future_if_cached)

    def map(  # type: ignore[override]  # one signature for Prefect's overloads
        self,
        *args: Any,
        return_state: bool = False,
        wait_for: Iterable[PrefectFuture[Any]] | None = None,
        deferred: bool = False,
        **kwargs: Any,
    ) -> Any:
        """Like Prefect's `map`, with cache hits answered up front and fan-out throttled."""
        self._register()
        flow_ctx = FlowRunContext.get()
        if deferred or flow_ctx is None or getattr(flow_ctx, "task_runner", None) is None:
            return super().map(
                *args, return_state=return_state, wait_for=wait_for, deferred=deferred, **kwargs
            )
        from prefect.utilities.engine import collect_task_run_inputs_sync, resolve_inputs_sync

        parameters = get_call_parameters(self.fn, args, kwargs, apply_defaults=False)
        dependencies = {
            k: collect_task_run_inputs_sync(v, max_depth=0) for k, v in parameters.items()
        }
        parameters = resolve_inputs_sync(parameters, max_depth=0)
        calls = expand_mapping_parameters(self.fn, parameters)
        futures = self._submit_throttled(flow_ctx.task_runner, calls, wait_for, dependencies)
        if return_state:
            states = []
            for future in futures:
                future.wait()
                states.append(future.state)
            return states
        return futures

    def _submit_throttled(
        self,
        runner: Any,
        calls: list[dict[str, Any]],
        wait_for: Iterable[PrefectFuture[Any]] | None,
        dependencies: dict[str, Any],
    ) -> PrefectFutureList[Any]:
        spec = self._require_spec()
        run = current_run()
        project = run.project if run else _runtime.project_for(spec.fn)
        limit = _runtime.max_in_flight(project, spec.max_in_flight)
        in_flight: collections.deque[PrefectFuture[Any]] = collections.deque()
        futures: list[PrefectFuture[Any]] = []
        hits = 0
        progress = _progress_for(spec.name, len(calls))
        shipped = self._for_runner(runner)
        pace = _runtime.ServerPace.for_map(len(calls))
        for index, call in enumerate(calls):
            cached = self._lookup(call) if self._fast_path_ok() else None
            if cached is not None:
                futures.append(cached)
                hits += 1
                progress(1)
                continue
            while len(in_flight) >= limit:
                in_flight.popleft().wait()
                progress(1)
            pace.before_submit()
            token = _map_index.set(index)
            try:
                future = runner.submit(
                    task=shipped, parameters=call, wait_for=wait_for, dependencies=dependencies
                )
            finally:
                _map_index.reset(token)
            self._account(future, shipped=shipped is not self)
            in_flight.append(future)
            futures.append(future)
        if hits:
            logger.info(f"Task '{spec.name}': {hits} of {len(calls)} mapped calls Cached")
        progress(0, done=True, in_flight=in_flight)
        pace.finish(in_flight)
        return PrefectFutureList(futures)  # type: ignore[abstract]  # Prefect's own usage

    def _fast_path_ok(self) -> bool:
        return bool(self.spec and self.spec.cache and self.refresh_cache is not True)

    def _lookup(self, parameters: dict[str, Any]) -> CachedFuture[Any] | None:
        spec = self._require_spec()
        run = current_run()
        project = run.project if run else _runtime.project_for(spec.fn)
        full = dict(parameters)
        for key, value in _parameter_defaults(self.fn).items():
            full.setdefault(key, value)
        parts = _keys.compute(spec, project, full)
        if parts is None or parts.fresh:
            return None
        value = _runtime.read_result(project, parts.key)
        if value is _runtime.MISS:
            return None
        record_task(spec.name, duration_s=0.0, success=True, cached=True)
        _summary.summarize_task(spec.name, "Cached", 0.0)
        return CachedFuture(value, spec.name)

    def _register(self) -> None:
        run = current_run()
        if run is None or self.spec is None:
            return
        TaskRegistry.register_task(
            run.flow,
            self.spec.name,
            inputs=[self.spec.input] if self.spec.input else [],
            outputs=[self.spec.output] if self.spec.output else [],
        )

    def _require_spec(self) -> TaskSpec:
        if self.spec is None:
            raise FlowDefinitionError(f"Task '{self.name}' was not made by latent's @task")
        return self.spec


@functools.lru_cache(maxsize=1024)
def _signature(fn: Callable[..., Any]) -> inspect.Signature:
    return inspect.signature(fn)


@functools.lru_cache(maxsize=256)
def _defaults_of(fn: Callable[..., Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(
        (name, p.default)
        for name, p in inspect.signature(fn).parameters.items()
        if p.default is not p.empty
    )


def _parameter_defaults(fn: Callable[..., Any]) -> dict[str, Any]:
    return dict(_defaults_of(fn))


def _progress_for(name: str, total: int) -> Callable[..., None]:
    """A progress callback: a Rich bar when `latent run` enabled one and the map is large."""
    from latent.prefect._progress import progress_callback

    return progress_callback(name, total)
