"""Cache keys for Latent tasks, and the Prefect `CachePolicy` that hands them to Prefect.

The key is latent-cache's: file-based when the task loads a catalog `input` itself (content
fingerprints of the dataset's files + code signature + cross-flow reference), row-level otherwise
(task name + code signature + stable hash of each argument). Two things are added here because only
a run knows them:

- the `params` keys the task read last time it ran, with their current values, so that changing a
  parameter invalidates exactly the tasks that read it;
- a deleted `output` dataset: no key, so the task runs and writes it again.
"""

from __future__ import annotations

import hashlib
import threading
import warnings
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from latent.cache import (
    UnhashableError,
    file_cache_key,
    fingerprint_paths,
    row_cache_key,
    stable_hash,
)
from latent.config import (
    DatasetError,
    DatasetNotFoundError,
    Project,
    bind_run,
    current_run,
    params,
)
from prefect.cache_policies import CachePolicy

if TYPE_CHECKING:
    from latent.prefect._task import TaskSpec
    from prefect.context import TaskRunContext

_READS_PREFIX = "reads-"
_ENTRY_PREFIX = "entry:"

_warned: set[str] = set()
_warned_lock = threading.Lock()


@dataclass(frozen=True)
class KeyParts:
    """A computed key and what it was made of (the base, and the params it covers)."""

    key: str
    base: str
    reads: tuple[str, ...]
    fresh: bool = False  # the output dataset is missing: run even if a result is stored


def compute(spec: TaskSpec, project: Project, parameters: dict[str, Any]) -> KeyParts | None:
    """The cache key of one call, or None when this call must run uncached."""
    base = _base_key(spec, project, parameters)
    if base is None:
        return None
    from latent.prefect._runtime import read_result

    reads = read_result(project, _READS_PREFIX + base)
    reads = tuple(reads) if isinstance(reads, (list, tuple)) else ()
    fresh = not _output_present(spec, project)
    return KeyParts(key=with_reads(base, reads), base=base, reads=reads, fresh=fresh)


def with_reads(base: str, reads: tuple[str, ...]) -> str:
    """The base key extended by the current values of the params a task reads."""
    if not reads:
        return base
    digest = hashlib.md5(base.encode(), usedforsecurity=False)
    for name in sorted(reads):
        digest.update(b"\0" + name.encode() + b"=" + _param_hash(name).encode())
    return digest.hexdigest()


def remember_reads(project: Project, base: str, reads: tuple[str, ...]) -> None:
    """Record the params a task read beside its results, so every machine sharing the result
    storage keys the task by them (a local record would let another machine's stale result in).
    """
    from latent.prefect._runtime import result_store

    result_store(project).write(obj=sorted(reads), key=_READS_PREFIX + base)


def remember_entry(project: Project, key: str, flow: str | None, task: str) -> None:
    """Note which task made a cached result, for `latent cache list/clear --task`.

    Best effort: the index only serves the command line, so a problem with it (`.latent/`
    deleted mid-run, a damaged index file) is a warning, never a failed task.
    """
    from latent.prefect._runtime import task_index

    try:
        task_index(project).set(_ENTRY_PREFIX + key, {"flow": flow, "task": task}, function=task)
    except Exception as exc:
        _warn_once(
            "index",
            f"Latent's task index under {project.cache_dir / 'tasks'} could not be updated "
            f"({type(exc).__name__}: {exc}); results are still cached, but `latent cache list` "
            "may not show them. Delete that directory to rebuild it.",
        )


def _param_hash(name: str) -> str:
    value = params.get(name, None) if current_run() is not None else None
    try:
        return stable_hash(value)
    except TypeError:
        return "unhashable"


def _base_key(spec: TaskSpec, project: Project, parameters: dict[str, Any]) -> str | None:
    try:
        if spec.input and (spec.input_param is None or parameters.get(spec.input_param) is None):
            return _file_key(spec, project, parameters)
        return row_cache_key(spec.name, (), parameters, spec.signature)
    except UnhashableError as exc:
        _warn_unhashable(spec.name, exc)
        return None


def _file_key(spec: TaskSpec, project: Project, parameters: dict[str, Any]) -> str | None:
    assert spec.input is not None
    catalog = catalog_for(project)
    try:
        dataset = catalog.get(spec.input)
        fingerprint = _fingerprint(dataset.paths(), project)
    except (DatasetError, DatasetNotFoundError, FileNotFoundError):
        return None  # the task will run and report the missing input with its own clear error
    rest = {k: v for k, v in parameters.items() if k != spec.input_param}
    others = row_cache_key(spec.name, (), rest, spec.signature)
    refs = (spec.input,) if "." in spec.input else ()
    return file_cache_key([fingerprint, others], spec.signature, refs)


def _fingerprint(paths: list[str], project: Project) -> str:
    """Content fingerprint of local files (latent-cache, with its stat index); for URLs, the
    filesystem's own checksum of every file (size + modification time or ETag, by backend)."""
    local = [p for p in paths if "://" not in p or p.startswith("file://")]
    remote = [p for p in paths if p not in local]
    parts = []
    if local:
        local = [p.removeprefix("file://") for p in local]
        parts.append(fingerprint_paths(local, index_dir=project.cache_dir))
    if remote:
        import fsspec

        for url in sorted(remote):
            fs, path = fsspec.core.url_to_fs(url)
            if not fs.exists(path):
                raise FileNotFoundError(url)
            files = sorted(fs.find(path)) if fs.isdir(path) else [path]
            parts.append(stable_hash([(f, str(fs.checksum(f))) for f in files]))
    return stable_hash(parts)


def _output_present(spec: TaskSpec, project: Project) -> bool:
    """The task's output dataset exists and is what the task last wrote (not damaged since)."""
    if not spec.output:
        return True
    try:
        dataset = catalog_for(project).get(spec.output)
        if not dataset.exists():
            return False
        paths = dataset.paths()
        from latent.prefect._runtime import MISS, read_result

        written = read_result(project, _output_record_key(paths))
        if written is MISS or written == _fingerprint(paths, project):
            return True
    except (DatasetError, DatasetNotFoundError, FileNotFoundError):
        return False
    warnings.warn(
        f"Output '{spec.output}' of task '{spec.name}' ({', '.join(paths)}) changed since the "
        "task wrote it (damaged, or edited by hand); the task runs again to rewrite it.",
        RuntimeWarning,
        stacklevel=2,
    )
    return False


def remember_output(project: Project, paths: list[str]) -> None:
    """Record the fingerprint of an output just written, beside the results."""
    from latent.prefect._runtime import result_store

    result_store(project).write(obj=_fingerprint(paths, project), key=_output_record_key(paths))


def _output_record_key(paths: list[str]) -> str:
    return "output-" + hashlib.md5("\0".join(paths).encode(), usedforsecurity=False).hexdigest()


def catalog_for(project: Project) -> Any:
    """The active run's catalog, or the shared catalog for a task called outside any flow."""
    run = current_run()
    if run is not None:
        return run.catalog
    return project.catalog("")


def _warn_once(topic: str, message: str) -> None:
    with _warned_lock:
        if topic in _warned:
            return
        _warned.add(topic)
    warnings.warn(message, RuntimeWarning, stacklevel=3)


def _warn_unhashable(task: str, exc: UnhashableError) -> None:
    with _warned_lock:
        if task in _warned:
            return
        _warned.add(task)
    where = exc.path or "an argument"
    short = exc.type_name.split(".")[-1]
    warnings.warn(
        f"Task '{task}' runs uncached: {where} of type '{exc.type_name}' cannot be hashed "
        f"stably. Register a hasher with latent.cache.register_hasher({short}, fn) "
        f"or pass cache=False to @task('{task}').",
        RuntimeWarning,
        stacklevel=2,
    )


@dataclass
class LatentCachePolicy(CachePolicy):
    """Prefect cache policy whose key comes from latent-cache (see the module docstring).

    `compute_key` runs in the task's worker thread before the body; the parts of the key are kept
    by task run id so that the body can extend the key once it knows which params it read.
    """

    spec: Any = None
    project: Any = None

    def compute_key(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        shipped = getattr(task_ctx.task, "shipped_run", None)
        if current_run() is None and shipped is not None:  # a worker process (Dask, Ray...)
            with bind_run(shipped.rebuild()):
                return self._compute_key(task_ctx, inputs)
        return self._compute_key(task_ctx, inputs)

    def _compute_key(self, task_ctx: TaskRunContext, inputs: dict[str, Any]) -> str | None:
        project = self.project or _active_project()
        parts = compute(self.spec, project, dict(inputs))
        pending_keys[task_ctx.task_run.id] = parts
        _task_names[task_ctx.task_run.id] = self.spec.name
        if parts is None:
            return None
        if parts.fresh:  # output deleted: drop the stored result so Prefect runs and rewrites
            from latent.prefect._runtime import forget_result

            forget_result(project, parts.key)
        return parts.key


def _active_project() -> Project:
    run = current_run()
    if run is None:
        raise RuntimeError("Latent task keys need an active flow run")
    return run.project


# task run id -> key parts, filled by compute_key, taken by the body of the same task run (or
# dropped when the run turned out Cached and the body never ran).
pending_keys: dict[Any, KeyParts | None] = {}
_task_names: dict[Any, str] = {}


def task_name_of(task_run_id: Any) -> str | None:
    """The Latent task name of a task run whose key was computed here (forgotten on read)."""
    return _task_names.pop(task_run_id, None)


def expiration_of(expire: timedelta | None) -> Any:
    """A Prefect expiration datetime for a result written now, or None for never."""
    if expire is None:
        return None
    from prefect.types._datetime import now

    return now("UTC") + expire
