"""`@task`: a Prefect task with catalog I/O, correct caching, row-scale maps and reporting.

This module owns the decorator and the calling surface — `t(x)`, `await t(x)`, `t.submit`,
`t.map` — and routes each to the part that does the work: the cache protocol (`_task_cache`),
one call's execution (`_execute`), the row engine (`_rows`). A task is sync or `async def`
alike everywhere: the Prefect body Latent hands to Prefect is a coroutine function exactly when
the user's is.
"""

from __future__ import annotations

import asyncio
import contextvars
import copy
import functools
import inspect
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any, Generic, Literal, ParamSpec, TypeVar

from latent.cache import code_signature
from latent.config import LatentConfigError, Project, bind_run, current_run
from latent.observe import (
    TaskExecutionError,
    bind_names,
    cached_span,
    continue_trace,
    logger,
    validate_span_type,
)
from latent.prefect import (
    _execute,
    _lineage,
    _prefect_compat,
    _rows,
    _runtime,
    _selection,
    _shipped,
)
from latent.prefect._futures import RowFuture
from latent.prefect._limits import Limits, limits_for, validate_rate
from latent.prefect._runtime import optional_parameter, resolved_signature
from latent.prefect._summary import account
from latent.prefect._task_cache import DEFAULT_EXPIRATION, Probe, cache_for
from latent.prefect.errors import FlowDefinitionError
from latent.registry import TaskRegistry
from prefect import Task
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext, TaskRunContext
from prefect.futures import PrefectFuture
from prefect.states import Completed, State

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_RETRIES = 3
DEFAULT_RETRY_DELAYS = [1.0, 2.0, 4.0]
RowsMode = Literal["batches", "task_runs"]
CACHED_MESSAGE = "Cached by Latent"

# A `.submit` that looked its key up already hands the probe to the task run it starts.
_probed: contextvars.ContextVar[tuple[str, Probe] | None] = contextvars.ContextVar(
    "latent_probed", default=None
)


@dataclass(frozen=True)
class TaskSpec:
    """What `@task(...)` was given, checked once at decoration time."""

    name: str
    fn: Callable[..., Any]
    input: str | None
    input_param: str | None
    output: str | None
    cache: bool
    cache_expiration: Any  # timedelta, None (never), or DEFAULT_EXPIRATION
    span_type: str
    max_in_flight: int | None
    rows: RowsMode = "batches"
    limit: str | None = None
    max_concurrency: int | None = None
    rate_limit: str | None = None

    @property
    def signature(self) -> str:
        """The code signature, taken at the first key, not at decoration: a helper defined
        below the task is part of it (latent-cache memoizes and re-checks it)."""
        return code_signature(self.fn)

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.fn)


def task(
    name: str | Callable[..., Any] | None = None,
    *,
    input: str | None = None,
    output: str | None = None,
    cache: bool = True,
    retry: bool = True,
    span_type: str = "CHAIN",
    cache_expiration: timedelta | None = DEFAULT_EXPIRATION,
    max_in_flight: int | None = None,
    rows: RowsMode = "batches",
    limit: str | None = None,
    max_concurrency: int | None = None,
    rate_limit: str | None = None,
    **task_kwargs: Any,
) -> Any:
    """Make a function (sync or `async def`) a Latent task; see the docs page for each option.

    `cache_expiration` defaults to `[cache] expiration` in latent.toml (7 days); `None` never
    expires. `max_in_flight` bounds the rows one `.map` runs at once; `max_concurrency` and
    `rate_limit` ("600/minute") bound every call of the task in the process, and `limit`
    names a shared `[limits.<name>]` budget. `rows="task_runs"` makes each mapped row its own
    Prefect task run instead of running rows in batches.
    """
    if callable(name):
        return task()(name)

    def decorate(fn: Callable[P, R]) -> LatentTask[P, R]:
        spec = _make_spec(
            fn,
            name or fn.__name__,
            input=input,
            output=output,
            cache=cache,
            span_type=span_type,
            cache_expiration=cache_expiration,
            max_in_flight=max_in_flight,
            rows=rows,
            limit=limit,
            max_concurrency=max_concurrency,
            rate_limit=rate_limit,
        )
        options = _prefect_options(spec, retry, task_kwargs)
        return LatentTask(fn=_body(spec), spec=spec, **options)

    return decorate


def _make_spec(fn: Callable[..., Any], name: str, **given: Any) -> TaskSpec:
    if not isinstance(name, str) or not name:
        raise FlowDefinitionError(f"@task needs a name string; got {name!r}")
    try:
        given["span_type"] = validate_span_type(given["span_type"])
    except ValueError as exc:
        raise FlowDefinitionError(f"@task('{name}'): {exc}") from None
    if given["rows"] not in ("batches", "task_runs"):
        raise FlowDefinitionError(
            f"@task('{name}', rows={given['rows']!r}): rows is 'batches' (the default: mapped "
            "rows run inside Latent, a few Prefect task runs per map) or 'task_runs' (one "
            "Prefect task run per row)"
        )
    if given["rate_limit"] is not None:
        try:
            validate_rate(given["rate_limit"], f"@task('{name}', rate_limit=...)")
        except LatentConfigError as exc:
            raise FlowDefinitionError(str(exc)) from None
    return TaskSpec(name=name, fn=fn, input_param=_input_param(fn, name, given["input"]), **given)


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
    # Latent's cache answers before Prefect's would (see `_task_cache`): Prefect caches and
    # persists nothing itself, and a hit is a task run that ends in a "Cached" state.
    options: dict[str, Any] = {
        "name": spec.name,
        "cache_policy": NO_CACHE,
        "persist_result": False,
    }
    if retry:
        options["retries"] = DEFAULT_RETRIES
        options["retry_delay_seconds"] = DEFAULT_RETRY_DELAYS
        options["retry_condition_fn"] = _worth_retrying
    else:
        options["retries"] = 0
    options.update(task_kwargs)  # the user's retries=, retry_delay_seconds=, ... win
    return options


def _worth_retrying(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect retry condition: retry flaky failures (network, rate limits), not bad input."""
    try:
        exc = state.result(raise_on_failure=False)
    except Exception:
        return True
    return _execute.retryable(exc)


def _body(spec: TaskSpec) -> Callable[..., Any]:
    """The function Prefect runs: the user's, wrapped in Latent's (async for an async fn)."""
    if spec.is_async:

        @functools.wraps(spec.fn)
        async def body(*args: Any, **kwargs: Any) -> Any:
            return await _in_task_run_async(spec, args, kwargs)

    else:

        @functools.wraps(spec.fn)
        def body(*args: Any, **kwargs: Any) -> Any:  # type: ignore[misc]
            return _in_task_run(spec, args, kwargs)

    body.__signature__ = _body_signature(spec)  # type: ignore[attr-defined]
    return body


def _body_signature(spec: TaskSpec) -> inspect.Signature:
    """The user's signature, with the `input` parameter optional: the catalog fills it."""
    sig = resolved_signature(spec.fn)
    if spec.input_param is None:
        return sig
    fixed = []
    seen_default = False
    for p in sig.parameters.values():
        if p.name == spec.input_param and p.default is p.empty:
            p = optional_parameter(p)
        elif (
            p.default is p.empty
            and seen_default
            and p.kind
            in (
                p.POSITIONAL_ONLY,
                p.POSITIONAL_OR_KEYWORD,
            )
        ):
            p = optional_parameter(p)  # a parameter with a default cannot precede one without
        seen_default = seen_default or p.default is not p.empty
        fixed.append(p)
    return sig.replace(parameters=fixed)


# -- a Prefect task run of the task ---------------------------------------------------------


class _TaskRun:
    """One Prefect task run of a Latent task, in the flow's process or a worker's."""

    def __init__(self, spec: TaskSpec, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        ctx = TaskRunContext.get()
        assert ctx is not None
        self.spec = spec
        self.ctx = ctx
        self.shipped = getattr(ctx.task, "shipped_run", None)
        self.args = args
        self.kwargs = kwargs

    def scope(self) -> Any:
        """In a worker process (Dask, Ray...): the flow's run rebuilt, spans in its trace."""
        if self.shipped is None or current_run() is not None:
            return _NullScope()
        return _ShippedScope(self.shipped)

    def prepare(self) -> tuple[_execute.Call, Any, Probe | None]:
        spec = self.spec
        run = current_run()
        project = run.project if run is not None else _runtime.project_for(spec.fn)
        catalog = _runtime.catalog_for(project)
        parameters = _execute.call_arguments(spec.fn, self.args, self.kwargs)
        call = _execute.Call(spec, project, catalog, parameters)
        if not spec.cache:
            return call, None, None
        cache = cache_for(project)
        handed = _probed.get() or getattr(self.ctx.task, "handed_probe", None)
        _probed.set(None)  # a task this body calls must not see it
        if handed is not None and handed[0] == spec.name:
            probe = handed[1]
        else:
            refresh = self.ctx.task.refresh_cache is True
            probe = cache.probe(spec, parameters, catalog, look=not refresh)
        return replace(call, cache_key=probe.key), cache, probe

    def hit(self, call: _execute.Call, cache: Any, probe: Probe) -> Any:
        cached_span(self.spec.name, self.spec.span_type, cache_key=probe.key)
        if self.shipped is None:
            account(self.spec.name, "Cached")
        return Completed(data=probe.value, name="Cached", message=CACHED_MESSAGE)

    def limits(self, call: _execute.Call) -> Limits:
        task = self.ctx.task
        return task.limits_for(call.project) if isinstance(task, LatentTask) else Limits()

    def final(self) -> bool:
        attempt = self.ctx.task_run.run_count or 1
        return attempt >= (self.ctx.task.retries or 0) + 1

    def failed(self, exc: Exception) -> None:
        if isinstance(exc, TaskExecutionError) or not _execute.retryable(exc) or self.final():
            if self.shipped is None:
                account(self.spec.name, "Failed")
            return
        attempt = self.ctx.task_run.run_count or 1
        attempts = (self.ctx.task.retries or 0) + 1
        logger.warning(
            f"Task '{self.spec.name}' attempt {attempt}/{attempts} failed with "
            f"{type(exc).__name__}: {exc}; retrying"
        )

    def done(self, ran: _execute.Ran, cache: Any, probe: Probe | None) -> Any:
        if cache is not None and probe is not None:
            cache.store_result(self.spec, probe, ran.value, ran.reads, ran.output)
        outcome = _shipped.Outcome(ran.duration_s, _rows_in(self.args, self.kwargs), ran.rows_out)
        if self.shipped is not None:
            return outcome.state(ran.value)  # the flow's process records it (see `_shipped`)
        account(
            self.spec.name,
            "Completed",
            ran.duration_s,
            rows_in=outcome.rows_in,
            rows_out=outcome.rows_out,
        )
        return ran.value


def _in_task_run(spec: TaskSpec, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    task_run = _TaskRun(spec, args, kwargs)
    with task_run.scope():
        call, cache, probe = task_run.prepare()
        if probe is not None and probe.hit:
            return task_run.hit(call, cache, probe)
        _explain(cache, spec, probe)
        if cache is not None and probe is not None:  # another run computing it: its record
            found = cache.claim(spec, probe, call.parameters, call.catalog)
            if found is not None:
                return task_run.hit(call, cache, found)
        try:
            try:
                with task_run.limits(call).slot():
                    ran = _execute.run(call, cache, final=task_run.final())
            except Exception as exc:
                task_run.failed(exc)
                raise
            return task_run.done(ran, cache, probe)
        finally:
            if cache is not None and probe is not None:
                cache.release(probe)


async def _in_task_run_async(spec: TaskSpec, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    task_run = _TaskRun(spec, args, kwargs)
    with task_run.scope():
        call, cache, probe = task_run.prepare()
        if probe is not None and probe.hit:
            return task_run.hit(call, cache, probe)
        _explain(cache, spec, probe)
        if cache is not None and probe is not None:  # as in `_in_task_run`
            found = await cache.aclaim(spec, probe, call.parameters, call.catalog)
            if found is not None:
                return task_run.hit(call, cache, found)
        try:
            try:
                async with task_run.limits(call).aslot():
                    ran = await _execute.run_async(call, cache, final=task_run.final())
            except Exception as exc:
                task_run.failed(exc)
                raise
            return task_run.done(ran, cache, probe)
        finally:
            if cache is not None and probe is not None:
                cache.release(probe)


def _explain(cache: Any, spec: TaskSpec, probe: Probe | None) -> None:
    if cache is None or probe is None:
        return
    lines = cache.explain_miss(spec, probe)
    if lines:
        logger.info(f"Task '{spec.name}' runs: " + "; ".join(lines))


class _NullScope:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


class _ShippedScope:
    def __init__(self, shipped: _shipped.ShippedRun) -> None:
        self._stack = [
            bind_run(shipped.rebuild()),
            bind_names(flow=shipped.flow),
            continue_trace(shipped.trace),
        ]

    def __enter__(self) -> None:
        for cm in self._stack:
            cm.__enter__()

    def __exit__(self, *exc: Any) -> None:
        for cm in reversed(self._stack):
            cm.__exit__(*exc)


def _rows_in(args: tuple[Any, ...], kwargs: dict[str, Any]) -> int | None:
    first = args[0] if args else next(iter(kwargs.values()), None)
    return _execute.length(first)


# -- the task object ------------------------------------------------------------------------


class LatentTask(Task[P, R], Generic[P, R]):
    """A Prefect `Task` with Latent's catalog I/O, caching, row engine and reporting."""

    def __init__(self, *args: Any, spec: TaskSpec | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.spec = spec
        self.shipped_run: _shipped.ShippedRun | None = None
        self.handed_probe: tuple[str, Probe] | None = None
        self._batch_task: _rows.BatchTask | None = None

    def require_spec(self) -> TaskSpec:
        if self.spec is None:
            raise FlowDefinitionError(f"Task '{self.name}' was not made by latent's @task")
        return self.spec

    def with_options(self, **kwargs: Any) -> LatentTask[P, R]:
        # Prefect's builds a plain `Task`: ours again, with the attributes our __init__ sets
        new = _prefect_compat.with_options_as(super(), type(self), **kwargs)
        assert isinstance(new, LatentTask)
        new.spec = replace(self.spec, name=new.name) if self.spec else None
        new.shipped_run = None
        new.handed_probe = None
        new._batch_task = None
        return new

    # -- calling ------------------------------------------------------------------------------

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """In a flow: a Prefect task run. Outside any flow: the function, with caching."""
        self._register(args, kwargs)
        spec = self.require_spec()
        gate = _selection.gate_for(spec.name)  # a dry run, or a task outside --only/--from/--to
        if gate is not None:
            value = self._noted(gate.call(self, args, kwargs))
            return _ready(value) if spec.is_async and _loop_running() else value
        if FlowRunContext.get() is None and TaskRunContext.get() is None:
            if kwargs.get("return_state"):
                return super().__call__(*args, **kwargs)
            if spec.is_async:
                return self._call_direct_async(args, kwargs)
            return self._call_direct(args, kwargs)
        result = super().__call__(*args, **kwargs)
        if kwargs.get("return_state"):
            return result
        if inspect.isawaitable(result):
            if _loop_running():
                return _awaited(result)
            return asyncio.run(_awaited(result))  # an async task called from a sync flow
        return self._noted(_value_of(result))

    def _direct_call(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
        spec = self.require_spec()
        project = _runtime.project_for(spec.fn)
        catalog = _runtime.catalog_for(project)
        parameters = _execute.call_arguments(spec.fn, args, kwargs)
        call = _execute.Call(spec, project, catalog, parameters)
        cache = cache_for(project) if spec.cache else None
        probe = cache.probe(spec, parameters, catalog) if cache is not None else None
        if probe is not None:
            call = replace(call, cache_key=probe.key)
        return call, cache, probe

    def _call_direct(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        call, cache, probe = self._direct_call(args, kwargs)
        if probe is not None and probe.hit:
            return self._direct_hit(call, cache, probe)
        try:
            with self.limits_for(call.project).slot():
                ran = _execute.run(call, cache, final=True)
        except TaskExecutionError:
            account(call.spec.name, "Failed")
            raise
        return self._direct_done(call, cache, probe, ran)

    async def _call_direct_async(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        call, cache, probe = self._direct_call(args, kwargs)
        if probe is not None and probe.hit:
            return self._direct_hit(call, cache, probe)
        try:
            async with self.limits_for(call.project).aslot():
                ran = await _execute.run_async(call, cache, final=True)
        except TaskExecutionError:
            account(call.spec.name, "Failed")
            raise
        return self._direct_done(call, cache, probe, ran)

    def _direct_hit(self, call: _execute.Call, cache: Any, probe: Probe) -> Any:
        cached_span(call.spec.name, call.spec.span_type, cache_key=probe.key)
        account(call.spec.name, "Cached")
        return probe.value

    def _direct_done(
        self, call: _execute.Call, cache: Any, probe: Probe | None, ran: _execute.Ran
    ) -> Any:
        if cache is not None and probe is not None:
            cache.store_result(call.spec, probe, ran.value, ran.reads, ran.output)
        account(call.spec.name, "Completed", ran.duration_s, rows_out=ran.rows_out)
        return ran.value

    def submit(self, *args: Any, **kwargs: Any) -> Any:
        """Like Prefect's `submit`; a cached call returns a finished future with no task run."""
        self._register(args, kwargs)
        gate = _selection.gate_for(self.require_spec().name)
        if gate is not None:
            return self._noted(gate.submit(self, args, kwargs))
        flow_ctx = FlowRunContext.get()
        runner = getattr(flow_ctx, "task_runner", None)
        target = self.for_runner(runner)
        submitted = None
        if flow_ctx is not None and not kwargs.get("return_state") and not kwargs.get("wait_for"):
            submitted = self._probe_submit(args, kwargs)
            if submitted is not None and submitted.future is not None:
                return self._noted(submitted.future)
        handed = (self.require_spec().name, submitted.probe) if submitted else None
        if target is not self:  # another process: the probe travels with the task's copy
            target.handed_probe = handed
        token = _probed.set(handed)
        try:
            future = Task.submit(target, *args, **kwargs)
        finally:
            _probed.reset(token)
        if isinstance(future, PrefectFuture):
            self.account_shipped(future, shipped=target is not self)
        return self._noted(future)

    def _probe_submit(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> _Submitted | None:
        spec = self.require_spec()
        run = current_run()
        if not spec.cache or run is None or _has_future((args, kwargs)):
            return None
        parameters = _execute.call_arguments(spec.fn, args, kwargs)
        cache = cache_for(run.project)
        refresh = self.refresh_cache is True
        probe = cache.probe(spec, parameters, run.catalog, look=not refresh)
        if not probe.hit:
            return _Submitted(probe, None)
        account(spec.name, "Cached")
        future: RowFuture[Any] = RowFuture(spec.name)
        future.set_cached(probe.value, probe.key or "")
        return _Submitted(probe, future)

    def account_shipped(self, future: PrefectFuture[Any], *, shipped: bool) -> None:
        """Count what a task run in another process did once it finishes (its body cannot)."""
        if shipped:
            _shipped.account_when_done(future, self.require_spec().name)

    def map(  # type: ignore[override]  # one signature for Prefect's overloads
        self,
        *args: Any,
        return_state: bool = False,
        wait_for: Iterable[PrefectFuture[Any]] | None = None,
        deferred: bool = False,
        **kwargs: Any,
    ) -> Any:
        """Like Prefect's `map`; rows run in Latent's row engine (see `_rows`)."""
        self._register(args, kwargs)
        gate = _selection.gate_for(self.require_spec().name)
        if gate is not None:
            answered = gate.map(self, args, kwargs, return_state=return_state)
            for future in answered if isinstance(answered, list) else ():
                self._noted(future)
            return self._noted(answered)
        flow_ctx = FlowRunContext.get()
        if deferred or flow_ctx is None or getattr(flow_ctx, "task_runner", None) is None:
            return super().map(
                *args, return_state=return_state, wait_for=wait_for, deferred=deferred, **kwargs
            )
        spec = self.require_spec()
        parameters = _prefect_compat.call_parameters(self.fn, args, kwargs)
        calls, dependencies = self.row_calls(parameters)
        engine = _rows.map_task_runs if spec.rows == "task_runs" else _rows.map_rows
        futures = engine(self, calls, wait_for=wait_for, dependencies=dependencies)
        for future in futures:
            self._noted(future)
        self._noted(futures)
        if return_state:
            for future in futures:
                future.wait()
            return [future.state for future in futures]
        return futures

    def row_calls(self, parameters: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """One arguments dict per mapped row (defaults filled, futures resolved), and the
        upstream task runs the map depends on; the same rows wherever a map is answered."""
        calls, dependencies = _prefect_compat.expand_map(self.fn, parameters)
        defaults = _defaults(self.require_spec().fn)
        return [{**defaults, **call} for call in calls], dependencies

    # -- for the row engine and runners -------------------------------------------------------

    def for_runner(self, runner: Any) -> LatentTask[P, R]:
        """This task, or a copy carrying the flow's run when the runner crosses processes."""
        run = current_run()
        if run is None or runner is None or _shipped.runs_in_this_process(runner):
            return self
        _ship_modules(self)
        shipped = copy.copy(self)
        shipped.shipped_run = _shipped.ShippedRun.of(run)
        return shipped

    def batch_task(self, runner: Any) -> _rows.BatchTask:
        """The Prefect task that runs batches of this task's rows on `runner`."""
        if self._batch_task is None:
            self._batch_task = _rows.BatchTask(self)
        run = current_run()
        if run is None or _shipped.runs_in_this_process(runner):
            return self._batch_task
        _ship_modules(self)
        shipped = copy.copy(self._batch_task)
        shipped.shipped_run = _shipped.ShippedRun.of(run)
        return shipped

    def limits_for(self, project: Project) -> Limits:
        spec = self.require_spec()
        return limits_for(
            project,
            spec.name,
            limit=spec.limit,
            max_concurrency=spec.max_concurrency,
            rate_limit=spec.rate_limit,
        )

    def concurrency_for(self, project: Project) -> int:
        """How many rows of one map run at once: per task, else latent.toml, else sized."""
        spec = self.require_spec()
        if spec.max_in_flight:
            return spec.max_in_flight
        configured = project.settings.prefect.max_in_flight
        if configured:
            return configured
        return 64 if spec.is_async else max(8, 8 * (os.cpu_count() or 1))

    def _register(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        run = current_run()
        if run is None or self.spec is None:
            return
        TaskRegistry.register_task(
            run.flow,
            self.spec.name,
            inputs=[self.spec.input] if self.spec.input else [],
            outputs=[self.spec.output] if self.spec.output else [],
        )
        # Arguments that are another task's output or a flow input draw edges (see _lineage).
        _lineage.record_call(run.flow, self.spec.name, [*args, *kwargs.values()])

    def _noted(self, value: Any) -> Any:
        """`value`, remembered as this task's output so the tasks it is passed to draw an edge."""
        if self.spec is not None:
            _lineage.note_result(value, self.spec.name)
        return value


@dataclass(frozen=True)
class _Submitted:
    probe: Probe
    future: RowFuture[Any] | None


def _ship_modules(task: LatentTask[Any, Any]) -> None:
    _shipped.ship_by_value(task.fn.__module__)
    if task.spec is not None:
        _shipped.ship_by_value(task.spec.fn.__module__)


def _has_future(value: Any, depth: int = 0) -> bool:
    if isinstance(value, PrefectFuture):
        return True
    if depth > 2:
        return False
    if isinstance(value, dict):
        return any(_has_future(v, depth + 1) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_has_future(v, depth + 1) for v in value)
    return False


@functools.lru_cache(maxsize=256)
def _defaults_of(fn: Callable[..., Any]) -> tuple[tuple[str, Any], ...]:
    return tuple(
        (name, p.default)
        for name, p in inspect.signature(fn).parameters.items()
        if p.default is not p.empty
    )


def _defaults(fn: Callable[..., Any]) -> dict[str, Any]:
    return dict(_defaults_of(fn))


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


async def _awaited(awaitable: Any) -> Any:
    return _value_of(await awaitable)


async def _ready(value: Any) -> Any:
    """`value` as an awaitable: what `t(x)` of an async task gives inside a running loop."""
    return value


def _value_of(result: Any) -> Any:
    """Prefect hands a body's return value straight back to `t(x)`; a hit is our state."""
    if isinstance(result, State) and result.message == CACHED_MESSAGE:
        data = result.data  # a result record around the value (never persisted: in memory)
        return getattr(data, "result", data)
    return result
