"""The row engine under `.map`: thousands of rows, a bounded number of Prefect task runs.

A row of an evaluation is Latent's unit: looked up in the cache (a hit costs no thread, no
coroutine, no Prefect call), run with its own retries inside the task's limits, traced as its
own span (``answer[17] q-17``), counted, and answered through its own future. Prefect sees the
map as a few task runs (``answer[0-99]``), each running a contiguous batch of rows: about
`IN_PROCESS_BATCHES` in this process, up to `MAX_BATCHES` for Dask, Ray and process runners to
spread over their workers. The server records a 10,000-row map without falling behind.

In this process (Prefect's thread runner) the rows of all batches share one pool: a thread
pool of `concurrency` threads for a sync task, the engine's event loop for an `async def` one
(one loop for every async row, so a client made once is used on one loop). A batch shipped to
another process runs its rows there the same way and sends their outcomes back as its result.

`@task(rows="task_runs")` keeps the first release's behaviour: one Prefect task run per row,
paced on what the server has recorded.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextvars
import functools
import math
import os
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import tenacity

from latent.cache import CacheWriteError, hash_once
from latent.config import RunConfig, bind_run, current_run
from latent.observe import (
    TaskExecutionError,
    bind_names,
    cached_rows,
    cached_span,
    continue_trace,
    logger,
)
from latent.prefect import _execute, _prefect_compat, _shipped
from latent.prefect._futures import RowFuture
from latent.prefect._limits import Limits, retry_policy
from latent.prefect._progress import RowProgress, progress_for
from latent.prefect._summary import account, account_cached
from latent.prefect._task_cache import UNCACHED, Probe, TaskCache, cache_for
from prefect import Task
from prefect.cache_policies import NO_CACHE
from prefect.context import FlowRunContext, TaskRunContext
from prefect.futures import PrefectFuture, PrefectFutureList

if TYPE_CHECKING:
    from latent.prefect._task import LatentTask, TaskSpec

MAX_BATCHES = 100  # Prefect task runs per map at most (shipped batches: what workers take)
#: In this process a batch is only what Prefect's UI shows of the map, and each task run costs
#: the flow and the server ~40 ms of CPU that rows are waiting for (a 10,000-row async map:
#: 1.1 s of its 10 s with 100 batches): a lead batch of `ROWS_PER_BATCH` rows, so the first
#: rows start while the rest are looked up, then about `IN_PROCESS_BATCHES` more.
ROWS_PER_BATCH = 100
IN_PROCESS_BATCHES = 10


@dataclass(frozen=True)
class Row:
    """One mapped call waiting to run: its index, its arguments, its cache key."""

    index: int
    parameters: dict[str, Any]
    probe: Probe


@dataclass(frozen=True)
class Outcome:
    """What one row did, sent back from the process that ran it."""

    index: int
    status: str  # "Completed", "Failed", or "Cached" (another run computed it meanwhile)
    duration_s: float
    value: Any = None
    error: BaseException | None = None
    rows_out: int | None = None
    key: str | None = None  # the cache key of a "Cached" row


class Batch:
    """A batch's rows, and (in this process) the map it belongs to. Deliberately not a
    dataclass or a collection: Prefect must not look inside for futures to resolve."""

    def __init__(self, rows: list[Row], map_run: MapRun | None) -> None:
        self.rows = rows
        self.map_run = map_run

    def __getstate__(self) -> dict[str, Any]:
        return {"rows": self.rows, "map_run": None}  # the map stays in the flow's process

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.rows = state["rows"]
        self.map_run = state["map_run"]


class MapRun:
    """One `.map` in the flow's process: its futures, limits, shared pool and progress."""

    def __init__(self, task: LatentTask[Any, Any], total: int, concurrency: int) -> None:
        self.task = task
        self.spec: TaskSpec = task.require_spec()
        run = current_run()
        assert run is not None
        self.run = run
        self.cache = cache_for(run.project) if self.spec.cache else None
        self.limits = task.limits_for(run.project)
        self.futures = [RowFuture[Any](self.spec.name, i) for i in range(total)]
        self.progress: RowProgress = progress_for(self.spec.name, total)
        self.concurrency = concurrency
        self.context = contextvars.copy_context()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self._gate: asyncio.Semaphore | None = None
        self._open = 1  # batches not ended, plus one while batches are being submitted

    def pool(self) -> concurrent.futures.ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(
                    self.concurrency, thread_name_prefix=f"latent-{self.spec.name}"
                )
            return self._pool

    def gate(self) -> asyncio.Semaphore:
        """The map's bound on async rows in flight (used on the engine loop only)."""
        with self._pool_lock:
            if self._gate is None:
                self._gate = asyncio.Semaphore(self.concurrency)
            return self._gate

    def opened(self) -> None:
        with self._pool_lock:
            self._open += 1

    def ended(self) -> None:
        """A batch ended (or the submitting did): the last one lets the map's threads go."""
        with self._pool_lock:
            self._open -= 1
            pool = self._pool if self._open == 0 else None
        if pool is not None:
            pool.shutdown(wait=False)

    def finish_row(self, outcome: Outcome) -> None:
        """Complete a row's future and count it (in the flow's context)."""
        future = self.futures[outcome.index]
        if outcome.status == "Failed":
            assert outcome.error is not None
            future.set_error(outcome.error)
            self.progress.failed()
        elif outcome.status == "Cached":  # computed by another run while this one waited
            future.set_cached(outcome.value, outcome.key or "")
            self.progress.cached()
        else:
            future.set_result(outcome.value)
            self.progress.done()


def _where(task: LatentTask[Any, Any]) -> tuple[Any, TaskSpec, RunConfig]:
    """The flow's task runner, the task's spec and the run a map belongs to."""
    flow_ctx = FlowRunContext.get()
    run = current_run()
    assert flow_ctx is not None and flow_ctx.task_runner is not None and run is not None
    return flow_ctx.task_runner, task.require_spec(), run


def map_rows(
    task: LatentTask[Any, Any],
    calls: list[dict[str, Any]],
    *,
    wait_for: Iterable[PrefectFuture[Any]] | None,
    dependencies: dict[str, Any],
) -> PrefectFutureList[Any]:
    """Run a `.map` in batches (see the module docstring); returns one future per row."""
    runner, spec, run = _where(task)
    map_run = MapRun(task, len(calls), task.concurrency_for(run.project))
    in_process = _shipped.runs_in_this_process(runner)
    batch_task = task.batch_task(runner)
    upstream = {"batch": set().union(*dependencies.values())} if dependencies else {}
    outside = contextvars.copy_context()  # batches are submitted outside the look-up's block
    submitted: list[PrefectFuture[Any]] = []

    def submit(rows: list[Row]) -> None:
        map_run.opened()
        future = outside.run(
            runner.submit,
            task=batch_task,
            parameters={
                "batch": Batch(rows, map_run if in_process else None),
                "label": _label(spec.name, rows),
            },
            wait_for=wait_for,
            dependencies=upstream,
        )
        for row in rows:
            map_run.futures[row.index].attach(future.task_run_id)
        future.add_done_callback(functools.partial(_batch_done, map_run, rows, in_process))
        submitted.append(future)

    if in_process:
        # rows share one pool here, so a batch is bookkeeping: few and large, each submitted
        # as soon as its rows are looked up (the first rows run while the rest are looked up)
        size = max(ROWS_PER_BATCH, math.ceil(len(calls) / IN_PROCESS_BATCHES))
        _answer_from_cache(map_run, calls, ROWS_PER_BATCH, size, submit)
    else:
        # a shipped batch is what a worker takes: as many as allowed, to spread the rows
        pending: list[Row] = []
        _answer_from_cache(map_run, calls, len(calls), len(calls), pending.extend)
        for rows in _split(pending, MAX_BATCHES) if pending else []:
            submit(rows)
    map_run.ended()
    if map_run.progress.shown:
        for future in submitted:  # with a bar shown, end it at the truth
            future.wait()
    map_run.progress.close()
    return PrefectFutureList(map_run.futures)  # type: ignore[abstract]


def _answer_from_cache(
    map_run: MapRun,
    calls: list[dict[str, Any]],
    first: int,
    size: int,
    ready: Callable[[list[Row]], None],
) -> None:
    """Complete every cached row's future; hand the rows that must run to `ready`: the first
    `first` of them, then `size` at a time."""
    spec, cache = map_run.spec, map_run.cache
    refresh = map_run.task.refresh_cache is True
    pending: list[Row] = []
    missed = 0
    cached: list[tuple[int, str | None]] = []  # (index, row id): short spans in the trace
    explained = False
    with hash_once():
        for index, call in enumerate(calls):
            if cache is None:
                probe = UNCACHED
            else:
                probe = cache.probe(spec, call, map_run.run.catalog, look=not refresh)
                if probe.hit:
                    map_run.futures[index].set_cached(probe.value, probe.key or "")
                    map_run.progress.cached()
                    cached.append((index, _execute.row_id(call)))
                    continue
                if not explained and not refresh:
                    explained = True
                    _log_why(cache, spec, probe)
            pending.append(Row(index, call, probe))
            if len(pending) == (size if missed else first):
                missed += len(pending)
                ready(pending)
                pending = []
    if pending:
        missed += len(pending)
        ready(pending)
    account_cached(spec.name, len(cached))
    cached_rows(spec.name, cached, total=len(calls), span_type=spec.span_type)
    hits = len(calls) - missed
    if hits:
        logger.info(f"Task '{spec.name}': {hits} of {len(calls)} mapped rows Cached")


def _log_why(cache: TaskCache, spec: TaskSpec, probe: Probe) -> None:
    lines = cache.explain_miss(spec, probe)
    if lines:
        logger.info(f"Task '{spec.name}' runs: " + "; ".join(lines))


def _split(rows: list[Row], most: int) -> list[list[Row]]:
    size = math.ceil(len(rows) / most)
    return [rows[i : i + size] for i in range(0, len(rows), size)]


def _label(name: str, rows: Sequence[Row]) -> str:
    first, last = rows[0].index, rows[-1].index
    return f"{name}[{first}]" if first == last else f"{name}[{first}-{last}]"


def _batch_done(map_run: MapRun, rows: list[Row], in_process: bool, future: Any) -> None:
    """A batch's task run ended: complete what it did not (a shipped batch's rows, a crash)."""
    try:
        _complete_batch(map_run, rows, in_process, future)
    finally:
        map_run.ended()


def _complete_batch(map_run: MapRun, rows: list[Row], in_process: bool, future: Any) -> None:
    state = None
    try:
        state = _prefect_compat.runner_final_state(future)
        outcomes = state.result(raise_on_failure=False) if state is not None else None
    except Exception as exc:  # the batch itself crashed (a worker died)
        outcomes = exc
    if not in_process and isinstance(outcomes, list):
        map_run.context.copy().run(_record_shipped, map_run, outcomes)
    # rows a crashed batch (a dead worker, an interrupt) never finished fail with its error
    error = (
        outcomes
        if isinstance(outcomes, BaseException)
        else RuntimeError(f"the task run of this row's batch ended without running it ({state!r})")
    )
    for row in rows:
        if map_run.futures[row.index].done():
            continue
        wrapped = TaskExecutionError(
            map_run.spec.name, error, context={"row_index": row.index, "batch": True}
        )
        map_run.context.copy().run(account, map_run.spec.name, "Failed")
        map_run.finish_row(Outcome(row.index, "Failed", 0.0, error=wrapped))


def _record_shipped(map_run: MapRun, outcomes: list[Outcome]) -> None:
    for outcome in outcomes:
        account(map_run.spec.name, outcome.status, outcome.duration_s, rows_out=outcome.rows_out)
        map_run.finish_row(outcome)


# -- the batch: a Prefect task run ----------------------------------------------------------


class BatchTask(Task[..., Any]):
    """The Prefect task that runs one batch of a map's rows (named by their range)."""

    def __init__(self, latent_task: LatentTask[Any, Any]) -> None:
        spec = latent_task.require_spec()
        super().__init__(
            fn=run_batch,
            name=spec.name,
            task_run_name="{label}",
            retries=0,
            cache_policy=NO_CACHE,
            persist_result=False,
        )
        self.latent_task = latent_task
        self.shipped_run: _shipped.ShippedRun | None = None


def run_batch(batch: Batch, label: str) -> Any:
    """The body of a batch task run: run every row, in this process or a worker's."""
    ctx = TaskRunContext.get()
    assert ctx is not None
    batch_task = ctx.task
    assert isinstance(batch_task, BatchTask)
    if batch.map_run is not None:
        return _run_here(batch.map_run, batch.rows)
    shipped = batch_task.shipped_run
    assert shipped is not None, "a batch outside the flow's process carries its run"
    run = current_run() or shipped.rebuild()
    with bind_run(run), bind_names(flow=shipped.flow), continue_trace(shipped.trace):
        return _run_elsewhere(batch_task.latent_task, run, batch.rows)


def _run_here(map_run: MapRun, rows: list[Row]) -> str:
    """Rows of an in-process batch on the map's shared pool; futures complete as rows end."""
    runner = _RowRunner(
        map_run.task, map_run.run, map_run.cache, map_run.limits, map_run.progress.waiting
    )
    done: list[Outcome] = []

    def finish(outcome: Outcome) -> None:
        done.append(outcome)
        map_run.finish_row(outcome)

    if map_run.spec.is_async:
        engine_loop().run(runner.run_all_async(rows, finish, map_run.gate()))
    else:
        context = contextvars.copy_context()  # this batch's: logs go to its task run
        pool = map_run.pool()
        waits = [pool.submit(context.copy().run, runner.run_one, row, finish) for row in rows]
        for wait in waits:
            wait.result()  # run_one reports a row's failure itself; this is Latent's own
    failed = sum(1 for o in done if o.status == "Failed")
    return f"{len(rows)} rows: {len(rows) - failed} completed, {failed} failed"


def _run_elsewhere(task: LatentTask[Any, Any], run: RunConfig, rows: list[Row]) -> list[Outcome]:
    """Rows of a shipped batch, in this worker; outcomes go back as the batch's result."""
    spec = task.require_spec()
    cache = cache_for(run.project) if spec.cache else None
    runner = _RowRunner(task, run, cache, task.limits_for(run.project), None, account_here=False)
    outcomes: list[Outcome] = []
    concurrency = task.concurrency_for(run.project)
    if spec.is_async:
        asyncio.run(runner.run_all_async(rows, outcomes.append, asyncio.Semaphore(concurrency)))
    else:
        context = contextvars.copy_context()
        with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
            waits = [
                pool.submit(context.copy().run, runner.run_one, row, outcomes.append)
                for row in rows
            ]
            for wait in waits:
                wait.result()  # run_one reports a row's failure itself; this is Latent's own
    return sorted(outcomes, key=lambda o: o.index)


class _RowRunner:
    """Runs rows of one task: limits, retries with backoff, the call, the cache, accounting."""

    def __init__(
        self,
        task: LatentTask[Any, Any],
        run: RunConfig,
        cache: TaskCache | None,
        limits: Limits,
        waiting: Callable[[int], None] | None,
        *,
        account_here: bool = True,
    ) -> None:
        self.task = task
        self.spec = task.require_spec()
        self.run = run
        self.cache = cache
        self.limits = limits
        self.waiting = waiting
        self.account_here = account_here
        retries = int(task.retries or 0)
        delays = _delays(task.retry_delay_seconds, retries)
        self.policy = retry_policy(retries, delays, _execute.retryable)
        self.attempts = retries + 1
        # a full or read-only result store: rows not started yet fail with it instead of
        # calling the model for results that could not be kept
        self.fault: CacheWriteError | None = None

    def _call(self, row: Row) -> _execute.Call:
        return _execute.Call(
            self.spec, self.run.project, self.run.catalog, row.parameters, row.index, row.probe.key
        )

    def run_one(self, row: Row, finish: Callable[[Outcome], None]) -> None:
        finish(self._attempt(row)())

    async def run_all_async(
        self, rows: list[Row], finish: Callable[[Outcome], None], gate: asyncio.Semaphore
    ) -> None:
        books = _bookkeeper() if self.cache is not None else None
        booked: list[concurrent.futures.Future[None]] = []

        async def one(row: Row) -> None:
            async with gate:
                rest = await self._attempt_async(row)
            if books is None:
                finish(rest())
                return
            # Storing the result creates a file: a fraction of a millisecond in the kernel
            # (much more on ext4 soon after many files were deleted), which the loop, and the
            # rows waiting for it, would wait out. The bookkeeping thread does it, in order.
            context = contextvars.copy_context()
            booked.append(books.submit(context.run, lambda: finish(rest())))

        await asyncio.gather(*(one(row) for row in rows))
        if booked:
            await asyncio.wrap_future(booked[-1])  # one thread, in order: all are done
            for done in booked:
                done.result()  # an error here is Latent's own: raised, not lost

    def _attempt(self, row: Row) -> Callable[[], Outcome]:
        """Claim the row's key and call it (retried, within limits); return its bookkeeping."""
        if self.fault is not None:
            return functools.partial(self._failed, row, self.fault)
        if self.cache is not None:  # another run computing this key: wait for its record
            found = self.cache.claim(self.spec, row.probe, row.parameters, self.run.catalog)
            if found is not None:
                return functools.partial(self._cached, row, found)
        try:
            ran = self._compute(row)
        except Exception as exc:
            self._release(row)
            return functools.partial(self._failed, row, exc)
        except BaseException:
            self._release(row)
            raise
        return functools.partial(self._completed, row, ran)

    async def _attempt_async(self, row: Row) -> Callable[[], Outcome]:
        """`_attempt` for an `async def` body."""
        if self.fault is not None:
            return functools.partial(self._failed, row, self.fault)
        if self.cache is not None:  # as in `_attempt`
            found = await self.cache.aclaim(self.spec, row.probe, row.parameters, self.run.catalog)
            if found is not None:
                return functools.partial(self._cached, row, found)
        try:
            ran = await self._compute_async(row)
        except Exception as exc:
            self._release(row)
            return functools.partial(self._failed, row, exc)
        except BaseException:
            self._release(row)
            raise
        return functools.partial(self._completed, row, ran)

    def _compute(self, row: Row) -> _execute.Ran:
        call = self._call(row)
        if self.attempts == 1:  # no retries: tenacity's bookkeeping is most of a fast row
            with self.limits.slot(self.waiting):
                return _execute.run(call, self.cache, final=True, attempt=1)
        for attempt in tenacity.Retrying(**self.policy):
            with attempt, self.limits.slot(self.waiting):  # every attempt is a call
                number = attempt.retry_state.attempt_number
                ran = _execute.run(call, self.cache, final=number >= self.attempts, attempt=number)
        return ran

    async def _compute_async(self, row: Row) -> _execute.Ran:
        call = self._call(row)
        if self.attempts == 1:  # as in `_compute`
            async with self.limits.aslot(self.waiting):
                return await _execute.run_async(call, self.cache, final=True, attempt=1)
        async for attempt in tenacity.AsyncRetrying(**self.policy):
            with attempt:
                async with self.limits.aslot(self.waiting):  # every attempt is a call
                    number = attempt.retry_state.attempt_number
                    ran = await _execute.run_async(
                        call, self.cache, final=number >= self.attempts, attempt=number
                    )
        return ran

    def _release(self, row: Row) -> None:
        if self.cache is not None:
            self.cache.release(row.probe)

    def _completed(self, row: Row, ran: _execute.Ran) -> Outcome:
        try:
            if self.cache is not None and row.probe.key is not None:
                try:
                    self.cache.store_result(self.spec, row.probe, ran.value, ran.reads, ran.output)
                except CacheWriteError as exc:
                    self.fault = exc  # this row keeps its value; the rest stop (see __init__)
                except OSError as exc:
                    _warn_store(self.spec.name, exc)
        finally:
            self._release(row)
        outcome = Outcome(row.index, "Completed", ran.duration_s, ran.value, rows_out=ran.rows_out)
        if self.account_here:
            account(self.spec.name, "Completed", ran.duration_s, rows_out=ran.rows_out)
        return outcome

    def _cached(self, row: Row, found: Probe) -> Outcome:
        """Another run computed this row while this one waited: a cache hit after all."""
        cached_span(
            self.spec.name,
            self.spec.span_type,
            cache_key=found.key,
            row_index=row.index,
            row_id=_execute.row_id(row.parameters),
        )
        if self.account_here:
            account(self.spec.name, "Cached")
        return Outcome(row.index, "Cached", 0.0, found.value, key=found.key)

    def _failed(self, row: Row, exc: Exception) -> Outcome:
        if not isinstance(exc, TaskExecutionError):  # retried out: wrap it like the last attempt
            exc = TaskExecutionError(self.spec.name, exc, context={"row_index": row.index})
        if self.account_here:
            account(self.spec.name, "Failed")
        return Outcome(row.index, "Failed", 0.0, error=exc)


def _delays(configured: Any, retries: int) -> list[float]:
    if configured is None:
        return [0.0]
    if isinstance(configured, (int, float)):
        return [float(configured)]
    values = [float(v) for v in configured]
    return values or [0.0]


_store_warned = threading.Event()


def _warn_store(task: str, exc: OSError) -> None:
    if _store_warned.is_set():
        return
    _store_warned.set()
    warnings.warn(
        f"Task '{task}': a result could not be stored ({exc}); the rows still return their "
        "values, but a re-run computes them again.",
        RuntimeWarning,
        stacklevel=2,
    )


_books: dict[int, concurrent.futures.ThreadPoolExecutor] = {}  # pid -> bookkeeping thread
_books_lock = threading.Lock()


def _bookkeeper() -> concurrent.futures.ThreadPoolExecutor:
    """The thread that stores async rows' results, in order (one per process: a forked
    worker makes its own)."""
    pid = os.getpid()
    with _books_lock:
        books = _books.get(pid)
        if books is None:
            books = _books[pid] = concurrent.futures.ThreadPoolExecutor(
                1, thread_name_prefix="latent-rows-store"
            )
        return books


# -- the engine's event loop -----------------------------------------------------------------


class EngineLoop:
    """One event loop in a daemon thread for every async row of the process."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._loop.is_closed():
                loop = asyncio.new_event_loop()
                started = threading.Event()

                def serve() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(started.set)
                    loop.run_forever()

                threading.Thread(target=serve, name="latent-rows", daemon=True).start()
                started.wait()
                self._loop = loop
            return self._loop

    def run(self, coro: Any) -> Any:
        """Run `coro` on the engine loop in the caller's context; wait for its result."""
        loop = self.loop()
        context = contextvars.copy_context()
        result: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def start() -> None:
            task = loop.create_task(coro, context=context)
            task.add_done_callback(lambda t: _settle(result, t))

        loop.call_soon_threadsafe(start)
        return result.result()


def _settle(result: concurrent.futures.Future[Any], task: asyncio.Task[Any]) -> None:
    if task.cancelled():
        result.cancel()
    elif task.exception() is not None:
        result.set_exception(task.exception())  # type: ignore[arg-type]
    else:
        result.set_result(task.result())


_engine = EngineLoop()


def engine_loop() -> EngineLoop:
    return _engine


# -- one Prefect task run per row (rows="task_runs") -------------------------------------------


def map_task_runs(
    task: LatentTask[Any, Any],
    calls: list[dict[str, Any]],
    *,
    wait_for: Iterable[PrefectFuture[Any]] | None,
    dependencies: dict[str, Any],
) -> PrefectFutureList[Any]:
    """The first release's map: a task run per row, throttled, paced on the server."""
    runner, spec, run = _where(task)
    limit = task.concurrency_for(run.project)
    in_flight: collections.deque[PrefectFuture[Any]] = collections.deque()
    futures: list[PrefectFuture[Any]] = []
    progress = progress_for(spec.name, len(calls))
    target = task.for_runner(runner)
    pace = ServerPace.for_map(len(calls))
    cache = cache_for(run.project) if spec.cache and task.refresh_cache is not True else None
    hits: list[tuple[int, str | None]] = []
    with hash_once():
        for index, call in enumerate(calls):
            if cache is not None:
                probe = cache.probe(spec, call, run.catalog)
                if probe.hit:
                    account(spec.name, "Cached")
                    cached = RowFuture[Any](spec.name, index)
                    cached.set_cached(probe.value, probe.key or "")
                    futures.append(cached)
                    progress.cached()
                    hits.append((index, _execute.row_id(call)))
                    continue
            while len(in_flight) >= limit:
                in_flight.popleft().wait()
                progress.done()
            pace.before_submit()
            future = runner.submit(
                task=target, parameters=call, wait_for=wait_for, dependencies=dependencies
            )
            task.account_shipped(future, shipped=target is not task)
            in_flight.append(future)
            futures.append(future)
    cached_rows(spec.name, hits, total=len(calls), span_type=spec.span_type)
    for future in in_flight:
        if progress.shown:
            future.wait()
            progress.done()
    progress.close()
    pace.finish(in_flight)
    return PrefectFutureList(futures)  # type: ignore[abstract]


class ServerPace:
    """Keeps a large per-row map from running ahead of what the Prefect server has recorded.

    The server takes task-run state changes through an in-memory queue of 10,000 events; a map
    whose runs finish faster than the server records them overflows it and loses task-run
    records. Every `check_every` submissions this waits while more than `max_lag` runs are
    unrecorded (bounded: a server that stops answering costs `max_wait_s` once, with a warning).
    """

    def __init__(self, flow_run_id: Any, *, max_lag: int = 1000, check_every: int = 200) -> None:
        self.flow_run_id = flow_run_id
        self.max_lag = max_lag
        self.check_every = check_every
        self.max_wait_s = 60.0
        self.submitted = 0
        self.baseline: int | None = None
        self.gave_up = False

    @classmethod
    def for_map(cls, calls: int) -> ServerPace:
        ctx = FlowRunContext.get()
        if calls <= 2000 or ctx is None or ctx.flow_run is None:
            return _NO_PACE
        return cls(ctx.flow_run.id)

    def before_submit(self) -> None:
        if self.baseline is None:
            self.baseline = _prefect_compat.count_final_task_runs(self.flow_run_id) or 0
        self.submitted += 1
        if self.gave_up or self.submitted % self.check_every:
            return
        self._wait_until(self.submitted - self.max_lag)

    def finish(self, in_flight: Iterable[Any]) -> None:
        for future in in_flight:
            future.wait()
        if self.submitted and not self.gave_up:
            self._wait_until(self.submitted)

    def _wait_until(self, target: int) -> None:
        assert self.baseline is not None
        deadline = time.monotonic() + self.max_wait_s
        while time.monotonic() < deadline:
            recorded = _prefect_compat.count_final_task_runs(self.flow_run_id)
            if recorded is None or recorded - self.baseline >= target:
                return
            time.sleep(0.2)
        self.gave_up = True
        warnings.warn(
            f"The Prefect server has not recorded this map's task runs for {self.max_wait_s:g} s; "
            "submitting the rest without waiting (its UI may miss some task runs).",
            RuntimeWarning,
            stacklevel=3,
        )


class _NoPace(ServerPace):
    def __init__(self) -> None:
        super().__init__(None)

    def before_submit(self) -> None:
        return None

    def finish(self, in_flight: Iterable[Any]) -> None:
        return None


_NO_PACE = _NoPace()
