"""The run summary `latent run` prints, and the one place a task call is accounted for.

`account` is called once per finished call (a task run, a mapped row, a cache hit): it records
the call's metrics on the flow's MLflow run and adds it to the summary of the `latent run`
collecting in this context; `account_cached` does it for a map's cached rows at once. The
summary groups calls per flow, task and status, with the p50 and p95 latency of the calls that
ran.
"""

from __future__ import annotations

import contextvars
import statistics
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from latent.config import current_run
from latent.observe import record_cache_hits, record_task

STATUSES = ("Completed", "Cached", "Failed")


@dataclass
class TaskRecord:
    """One line of the run summary: the calls of one task that ended in one status."""

    flow: str | None
    task: str
    status: str  # "Completed", "Cached", "Failed"
    durations: list[float] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.durations)

    @property
    def duration_s(self) -> float:
        return sum(self.durations)

    def percentile(self, q: int) -> float | None:
        """The q-th percentile call latency (None for cache hits, which cost no call)."""
        if self.status == "Cached" or not self.durations:
            return None
        if len(self.durations) == 1:
            return self.durations[0]
        return statistics.quantiles(self.durations, n=100, method="inclusive")[q - 1]


@dataclass
class RunSummary:
    """Collects what every task of a run did, thread-safely, for `latent run`'s table."""

    _rows: dict[tuple[str | None, str, str], TaskRecord] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, flow: str | None, task: str, status: str, duration_s: float) -> None:
        with self._lock:
            row = self._rows.get((flow, task, status))
            if row is None:
                row = self._rows[(flow, task, status)] = TaskRecord(flow, task, status)
            row.durations.append(duration_s)

    def add_many(self, flow: str | None, task: str, status: str, count: int) -> None:
        """`count` calls that cost nothing to time (cache hits)."""
        with self._lock:
            row = self._rows.get((flow, task, status))
            if row is None:
                row = self._rows[(flow, task, status)] = TaskRecord(flow, task, status)
            row.durations.extend([0.0] * count)

    def grouped(self) -> list[TaskRecord]:
        """One row per (flow, task, status), in first-seen order."""
        with self._lock:
            return list(self._rows.values())

    def count(self, task: str, status: str) -> int:
        with self._lock:
            return sum(r.count for (_, t, s), r in self._rows.items() if t == task and s == status)


_summary: contextvars.ContextVar[RunSummary | None] = contextvars.ContextVar(
    "latent_run_summary", default=None
)


@contextmanager
def collect_summary() -> Iterator[RunSummary]:
    """Collect task records for everything run inside this block."""
    summary = RunSummary()
    token = _summary.set(summary)
    try:
        yield summary
    finally:
        _summary.reset(token)


def account(
    task: str,
    status: str,
    duration_s: float = 0.0,
    *,
    rows_in: int | None = None,
    rows_out: int | None = None,
) -> None:
    """Record one finished call: its metrics on the flow's run, and a summary line."""
    record_task(
        task,
        duration_s=duration_s,
        success=status != "Failed",
        cached=status == "Cached",
        rows_in=rows_in,
        rows_out=rows_out,
    )
    summary = _summary.get()
    if summary is None:
        return
    run = current_run()
    summary.add(run.flow if run else None, task, status, duration_s)


def account_cached(task: str, count: int) -> None:
    """Record `count` cache hits of one task at once: a map's cached rows (see `account`)."""
    if count <= 0:
        return
    record_cache_hits(task, count)
    summary = _summary.get()
    if summary is None:
        return
    run = current_run()
    summary.add_many(run.flow if run else None, task, "Cached", count)
