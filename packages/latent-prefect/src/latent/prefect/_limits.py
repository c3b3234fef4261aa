"""How hard a task may hit what it calls: concurrency, rate limits, and retries with backoff.

Limits belong to the endpoint, not the task: `@task(limit="openai")` names a budget declared
once in latent.toml (``[limits.openai] concurrency = 8, rate = "500/minute"``) and every task
naming it shares it; `@task(max_concurrency=..., rate_limit=...)` adds the task's own. Budgets
live for the process, so they hold across concurrent maps, threads and the event loop.

Rates use the `limits` library (moving windows, the "600/minute" syntax users know from
Flask-Limiter); retries use `tenacity`, waiting the task's retry delays with jitter, or exactly
what a 429's ``Retry-After`` asks (openai, anthropic and httpx errors carry the response).
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

import tenacity
from limits import RateLimitItem, parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from latent.config import LatentConfigError, Project

MAX_WAIT_S = 120.0  # never wait longer than this between attempts, whatever a server asks


class Budget:
    """A concurrency budget shared by threads and coroutines: at most `size` calls at once.

    A released slot is handed to the oldest waiter directly, so a busy budget is fair.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._free = size
        self._lock = threading.Lock()
        self._waiters: deque[Callable[[], None]] = deque()

    def acquire(self) -> None:
        with self._lock:
            if self._free > 0 and not self._waiters:
                self._free -= 1
                return
            event = threading.Event()
            self._waiters.append(event.set)
        event.wait()

    async def acquire_async(self) -> None:
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._free > 0 and not self._waiters:
                self._free -= 1
                return
            handed: asyncio.Future[None] = loop.create_future()

            def wake() -> None:
                loop.call_soon_threadsafe(self._hand_to, handed)

            self._waiters.append(wake)
        await handed

    def _hand_to(self, future: asyncio.Future[None]) -> None:
        if future.cancelled():  # the waiter gave up: pass its slot on
            self.release()
        else:
            future.set_result(None)

    def release(self) -> None:
        with self._lock:
            if not self._waiters:
                self._free += 1
                return
            wake = self._waiters.popleft()
        wake()


class Rate:
    """A rate limit such as "600/minute": at most that many calls in any moving window, and
    calls spread at least half their average interval apart, so a budget is not spent in one
    burst at the start of each window (providers count bursts too)."""

    _limiter = MovingWindowRateLimiter(MemoryStorage())

    def __init__(self, item: RateLimitItem, name: str) -> None:
        self.item = item
        self.name = name
        self.spacing = item.get_expiry() / item.amount / 2
        self._next = 0.0
        self._lock = threading.Lock()

    def delay(self) -> float:
        """0 when a call may go now (and counts it), else seconds until one may."""
        with self._lock:
            now = time.monotonic()
            if now < self._next:
                return self._next - now
            if not self._limiter.hit(self.item, self.name):
                stats = self._limiter.get_window_stats(self.item, self.name)
                return max(0.005, stats.reset_time - time.time())
            self._next = now + self.spacing
            return 0.0


@dataclass(frozen=True)
class Limits:
    """Everything one task's calls must respect; `slot()` / `aslot()` wait for it."""

    budgets: tuple[Budget, ...] = ()
    rates: tuple[Rate, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.budgets and not self.rates

    @contextmanager
    def slot(self, waiting: Callable[[int], None] | None = None) -> Iterator[None]:
        # the concurrency slot first, the rate token last: the token's time is then the time
        # the call goes out (taken earlier, a queue behind the slots would bunch the calls)
        taken = []
        try:
            for budget in self.budgets:
                budget.acquire()
                taken.append(budget)
            for rate in self.rates:
                while (pause := rate.delay()) > 0:
                    _note(waiting, 1)
                    time.sleep(pause)
                    _note(waiting, -1)
            yield
        finally:
            for budget in reversed(taken):
                budget.release()

    @asynccontextmanager
    async def aslot(self, waiting: Callable[[int], None] | None = None) -> AsyncIterator[None]:
        taken = []
        try:
            for budget in self.budgets:
                await budget.acquire_async()
                taken.append(budget)
            for rate in self.rates:
                while (pause := rate.delay()) > 0:
                    _note(waiting, 1)
                    await asyncio.sleep(pause)
                    _note(waiting, -1)
            yield
        finally:
            for budget in reversed(taken):
                budget.release()


def _note(waiting: Callable[[int], None] | None, n: int) -> None:
    if waiting is not None:
        waiting(n)


_registry: dict[tuple[str, ...], Budget | Rate] = {}
_registry_lock = threading.Lock()


def limits_for(
    project: Project,
    task: str,
    *,
    limit: str | None,
    max_concurrency: int | None,
    rate_limit: str | None,
) -> Limits:
    """The budgets of a task: its own, and the named one from `[limits.<name>]`."""
    budgets: list[Budget] = []
    rates: list[Rate] = []
    if max_concurrency:
        budgets.append(
            _shared(("task", task, "concurrency", str(max_concurrency)), max_concurrency)
        )
    if rate_limit:
        rates.append(_shared_rate(("task", task, rate_limit), rate_limit, f"@task('{task}')"))
    if limit:
        declared = project.settings.limits.get(limit)
        if declared is None:
            known = ", ".join(sorted(project.settings.limits)) or "none"
            raise LatentConfigError(
                f"@task('{task}', limit='{limit}'): no [limits.{limit}] in "
                f"{project.settings_file} (declared: {known}). Add it, e.g.\n"
                f'[limits.{limit}]\nconcurrency = 8\nrate = "500/minute"'
            )
        root = str(project.root)
        if declared.concurrency:
            key = (root, "limit", limit, str(declared.concurrency))
            budgets.append(_shared(key, declared.concurrency))
        if declared.rate:
            where = f"[limits.{limit}] rate in {project.settings_file}"
            rates.append(_shared_rate((root, "limit", limit, declared.rate), declared.rate, where))
    return Limits(tuple(budgets), tuple(rates))


def _shared(key: tuple[str, ...], size: int) -> Budget:
    with _registry_lock:
        found = _registry.get(key)
        if not isinstance(found, Budget):
            found = _registry[key] = Budget(size)
        return found


def _shared_rate(key: tuple[str, ...], text: str, where: str) -> Rate:
    with _registry_lock:
        found = _registry.get(key)
        if isinstance(found, Rate):
            return found
        validate_rate(text, where)
        found = _registry[key] = Rate(parse(text), "/".join(key))
        return found


def validate_rate(text: str, where: str) -> None:
    """Raise LatentConfigError naming `where` when `text` is not a rate such as "600/minute"."""
    try:
        parse(text)
    except ValueError:
        raise LatentConfigError(
            f"{where}: rate {text!r} is not a rate; write it as '<count>/<unit>', e.g. "
            "'600/minute', '10/second' or '10000/day'"
        ) from None


# -- retries -----------------------------------------------------------------------------------


def retry_policy(
    retries: int,
    delays: list[float],
    retryable: Callable[[BaseException], bool],
) -> dict[str, Any]:
    """tenacity arguments: `retries` more attempts, waiting `delays` (last one repeats) with
    jitter, or what the error's ``Retry-After`` asks; only errors `retryable` accepts."""

    def wait(state: tenacity.RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome is not None else None
        asked = retry_after(error) if error is not None else None
        if asked is not None:
            return min(asked, MAX_WAIT_S)
        base = delays[min(state.attempt_number - 1, len(delays) - 1)] if delays else 0.0
        return min(base + random.uniform(0, base / 2), MAX_WAIT_S)

    return {
        "stop": tenacity.stop_after_attempt(retries + 1),
        "wait": wait,
        "retry": tenacity.retry_if_exception(retryable),
        "reraise": True,
    }


def retry_after(error: BaseException) -> float | None:
    """Seconds a server asked to wait (``Retry-After`` / ``retry-after-ms``), if it said."""
    seen = 0
    current: BaseException | None = error
    while current is not None and seen < 5:
        headers = _headers(current)
        if headers is not None:
            found = _parse_retry_after(headers)
            if found is not None:
                return found
        current = current.__cause__ or current.__context__
        seen += 1
    return None


def _headers(error: BaseException) -> Any:
    response = getattr(error, "response", None)
    headers = getattr(response, "headers", None)
    return headers if headers is not None else getattr(error, "headers", None)


def _parse_retry_after(headers: Any) -> float | None:
    try:
        millis = headers.get("retry-after-ms")
        if millis is not None:
            return max(0.0, float(millis) / 1000)
        value = headers.get("retry-after")
    except Exception:
        return None
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except (TypeError, ValueError):
        pass
    try:
        when = email.utils.parsedate_to_datetime(str(value))
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
