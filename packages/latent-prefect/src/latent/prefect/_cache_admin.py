"""What `latent cache list|clear|prune` does: task results and checkpoints, by flow and task.

Task results live in Prefect's result storage (one record per key); the task index that the
cache policy keeps beside them says which flow and task made each record.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from latent.cache import CacheStore
from latent.config import Project
from latent.prefect import _runtime

_ENTRY_PREFIX = "entry:"


@dataclass
class TaskRow:
    flow: str | None
    task: str
    count: int
    size: int


def _records(project: Project) -> Iterator[tuple[str, str | None, str, Path | None]]:
    """(key, flow, task, local record path or None) for every indexed task result."""
    index = _runtime.task_index(project)
    local = _local_results_dir(project)
    for entry in index.entries():
        if not entry.key.startswith(_ENTRY_PREFIX):
            continue
        meta = index.get(entry.key)
        if not isinstance(meta, dict):
            continue
        key = entry.key.removeprefix(_ENTRY_PREFIX)
        path = local / key if local is not None else None
        yield key, meta.get("flow"), str(meta.get("task")), path


def _local_results_dir(project: Project) -> Path | None:
    location = project.results_storage
    if "://" in location and not location.startswith("file://"):
        return None
    return Path(location.removeprefix("file://"))


def task_entries(project: Project, *, flow: str | None, task: str | None) -> list[TaskRow]:
    rows: dict[tuple[str | None, str], TaskRow] = {}
    for _key, f, t, path in _records(project):
        if (flow and f != flow) or (task and t != task):
            continue
        if path is not None and not path.exists():
            continue
        row = rows.setdefault((f, t), TaskRow(f, t, 0, 0))
        row.count += 1
        row.size += path.stat().st_size if path is not None else 0
    return sorted(rows.values(), key=lambda r: (r.flow or "", r.task))


def clear_tasks(project: Project, *, flow: str | None, task: str | None) -> int:
    """Delete matching task results (record files and index entries); returns the count."""
    index = _runtime.task_index(project)
    removed = 0
    for key, f, t, path in list(_records(project)):
        if (flow and f != flow) or (task and t != task):
            continue
        if path is not None and path.exists():
            path.unlink()
            removed += 1
        index.delete(_ENTRY_PREFIX + key)
    return removed


def prune(project: Project) -> tuple[int, int]:
    """Delete expired task results and expired checkpoint entries."""
    removed = 0
    local = _local_results_dir(project)
    if local is not None and local.is_dir():
        now = time.time()
        for path in local.iterdir():
            if path.is_file() and _expired(path, now):
                path.unlink(missing_ok=True)
                removed += 1
    checkpoints = CacheStore(project.cache_dir).prune_expired() if project.cache_dir.exists() else 0
    return removed, checkpoints


def _expired(path: Path, now: float) -> bool:
    try:
        expiration = json.loads(path.read_bytes())["metadata"].get("expiration")
    except (OSError, ValueError, KeyError, TypeError):
        return False  # not a result record we understand: leave it alone
    if not expiration:
        return False
    return datetime.fromisoformat(expiration.replace("Z", "+00:00")).timestamp() <= now


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
