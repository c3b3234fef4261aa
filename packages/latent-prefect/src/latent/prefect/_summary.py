"""The run summary `latent run` prints: what every task of a run did, collected per run."""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from latent.config import current_run


@dataclass
class TaskRecord:
    """One line of the run summary the command line prints."""

    flow: str | None
    task: str
    status: str  # "Completed", "Cached", "Failed"
    duration_s: float
    count: int = 1


@dataclass
class RunSummary:
    """Collects what every task of a run did, thread-safely, for `latent run`'s table."""

    records: list[TaskRecord] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, flow: str | None, task: str, status: str, duration_s: float) -> None:
        with self._lock:
            self.records.append(TaskRecord(flow, task, status, duration_s))

    def grouped(self) -> list[TaskRecord]:
        """One row per (flow, task, status), durations summed, in first-seen order."""
        rows: dict[tuple[str | None, str, str], TaskRecord] = {}
        with self._lock:
            for r in self.records:
                key = (r.flow, r.task, r.status)
                if key in rows:
                    rows[key].count += 1
                    rows[key].duration_s += r.duration_s
                else:
                    rows[key] = TaskRecord(r.flow, r.task, r.status, r.duration_s)
        return list(rows.values())


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


def summarize_task(task: str, status: str, duration_s: float) -> None:
    summary = _summary.get()
    if summary is None:
        return
    run = current_run()
    summary.add(run.flow if run else None, task, status, duration_s)
