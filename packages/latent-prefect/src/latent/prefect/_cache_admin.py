"""What `latent cache list|clear|prune|why` and `latent checkpoints` do.

Task results are read from the result store itself: every record names its task and flow in
its header (see `_results`), so nothing else has to be kept in step with it — deleting
`.latent/cache` (checkpoints) leaves `latent cache list/clear` exact.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from latent.cache import CacheStore
from latent.config import Project
from latent.prefect._results import Header, ResultStore
from latent.prefect._task_cache import SIDE_PREFIXES, explanation_of


@dataclass
class TaskRow:
    flow: str | None
    task: str
    count: int
    size: int


def _results(project: Project) -> Iterator[tuple[str, Header, int]]:
    """(key, header, bytes) of every task result (not the side records) in the project."""
    for key, header, size in ResultStore(project.results_storage).headers():
        if header.task is not None and not key.startswith(SIDE_PREFIXES):
            yield key, header, size


def task_entries(project: Project, *, flow: str | None, task: str | None) -> list[TaskRow]:
    rows: dict[tuple[str | None, str], TaskRow] = {}
    now = time.time()
    for _key, header, size in _results(project):
        assert header.task is not None
        if (flow and header.flow != flow) or (task and header.task != task):
            continue
        if header.expired(now):
            continue
        row = rows.setdefault((header.flow, header.task), TaskRow(header.flow, header.task, 0, 0))
        row.count += 1
        row.size += size
    return sorted(rows.values(), key=lambda r: (r.flow or "", r.task))


def clear_tasks(project: Project, *, flow: str | None, task: str | None) -> int:
    """Delete matching task results; returns how many."""
    store = ResultStore(project.results_storage)
    removed = 0
    for key, header, _size in list(_results(project)):
        if (flow and header.flow != flow) or (task and header.task != task):
            continue
        if store.delete(key):
            removed += 1
    return removed


def prune(project: Project) -> tuple[int, int]:
    """Delete expired task results and expired checkpoint entries."""
    store = ResultStore(project.results_storage)
    now = time.time()
    removed = sum(
        1 for key, header, _ in list(_results(project)) if header.expired(now) and store.delete(key)
    )
    checkpoints = CacheStore(project.cache_dir).prune_expired() if project.cache_dir.exists() else 0
    return removed, checkpoints


def why(project: Project, task: str) -> dict[str, Any] | None:
    """The last recorded reason `task` ran instead of hitting the cache."""
    return explanation_of(project, task)


def checkpoint_entries(project: Project) -> list[tuple[str, int, int]]:
    """(function, entries, bytes) for the checkpoint store of the project."""
    if not project.cache_dir.exists():
        return []
    totals: dict[str, list[int]] = {}
    for entry in CacheStore(project.cache_dir).entries():
        row = totals.setdefault(entry.function or "?", [0, 0])
        row[0] += 1
        row[1] += entry.size
    return [(f, c, s) for f, (c, s) in sorted(totals.items())]
