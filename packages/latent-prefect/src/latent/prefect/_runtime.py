"""Where a run gets its project, and the one-time wiring of the other packages to it.

latent-config finds the project; this module tells latent-cache (checkpoint directory and
environment) and latent-observe (tracking URI, logger hook) about it, once per project root, and
builds the Prefect result storage that task caching writes and the fast path reads.
"""

from __future__ import annotations

import contextvars
import inspect
import logging
import os
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

from latent.cache import CacheStore, configure_checkpoints, set_module_namer
from latent.config import Project, current_run, find_project_root
from latent.observe import configure_tracking, set_logger_provider
from latent.prefect._importpath import add_project_root

_configured: list[Project] = []  # the project the process is wired to (at most one)
_configure_lock = threading.Lock()

# `latent run --param k=v` hands overrides to the flow it runs, by flow name.
_overrides: contextvars.ContextVar[Mapping[str, Sequence[str] | Mapping[str, Any]] | None] = (
    contextvars.ContextVar("latent_param_overrides", default=None)
)


@lru_cache(maxsize=4096)
def project_module_name(filename: str) -> str | None:
    """``flows.answer.flow`` for ``<project>/flows/answer/flow.py``: the module name a file has
    in its project, whatever name it was imported under (a script's ``__main__``, a notebook's
    package path, `latent run`'s ``latent_flows.answer``). None outside a project.
    """
    path = Path(filename)
    if path.suffix != ".py":
        return None
    root = find_project_root(path)
    if root is None:
        return None
    try:
        parts = path.resolve().relative_to(root).with_suffix("").parts
    except ValueError:
        return None
    if parts and parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts) or None


# Cache keys and checkpoints name user code by its place in the project (see latent-cache's
# `set_module_namer`), so a flow run as a script, from a notebook or by `latent run` shares them.
set_module_namer(project_module_name)


def source_file(fn: Callable[..., Any]) -> str | None:
    """The file a user function was defined in, which helps find its project."""
    try:
        return inspect.getsourcefile(fn)
    except (TypeError, OSError):
        return None


def resolved_signature(fn: Callable[..., Any]) -> inspect.Signature:
    """`fn`'s signature with string annotations evaluated in `fn`'s own module.

    Prefect builds its parameter model from the wrapper's signature; the wrapper lives in another
    module, so `from __future__ import annotations` names like `pd.DataFrame` must be resolved here.
    """
    try:
        return inspect.signature(fn, eval_str=True)
    except Exception:  # an annotation that cannot be evaluated: keep it as text
        return inspect.signature(fn)


def optional_parameter(p: inspect.Parameter) -> inspect.Parameter:
    """`p` with default None and, if annotated, `X | None`: the catalog fills it when omitted."""
    annotation = p.annotation
    if annotation is not p.empty and not isinstance(annotation, str):
        annotation = annotation | None
    return p.replace(default=None, annotation=annotation)


def project_for(fn: Callable[..., Any]) -> Project:
    """The project of the active run, else the one found from the cwd or `fn`'s file."""
    run = current_run()
    if run is not None:
        return run.project
    return prepare(Project.discover(source_file=source_file(fn)))


def prepare(project: Project) -> Project:
    """Wire latent-cache and latent-observe to `project` (again only when the project changed).

    The wiring is process-wide: one process runs one project at a time (tests and notebooks
    that switch projects get rewired on the switch).
    """
    add_project_root(project.root)  # `from flows.common import x` in flows and workers
    if _configured and _configured[0] is project:
        return project
    with _configure_lock:
        settings = project.settings
        configure_checkpoints(environment=settings.environment, directory=project.cache_dir)
        configure_tracking(
            enabled=settings.mlflow.enabled,
            tracking_uri=project.tracking_uri,
            experiment_prefix=settings.mlflow.experiment_prefix,
            environment=settings.environment,
        )
        set_logger_provider(_prefect_run_logger)
        _configured[:] = [project]
    return project


def _prefect_run_logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger] | None:
    """Prefect's run logger when inside a Prefect run, so records show in Prefect's UI."""
    from prefect.context import FlowRunContext, TaskRunContext
    from prefect.logging import get_run_logger

    if TaskRunContext.get() is None and FlowRunContext.get() is None:
        return None
    try:
        return get_run_logger()
    except Exception:
        return None


@lru_cache(maxsize=32)
def _result_filesystem(location: str) -> Any:
    """A Prefect filesystem block for a local directory or an fsspec URL."""
    from prefect.filesystems import LocalFileSystem, RemoteFileSystem

    if "://" in location and not location.startswith("file://"):
        return RemoteFileSystem(basepath=location.rstrip("/"))
    path = location.removeprefix("file://")
    Path(path).mkdir(parents=True, exist_ok=True)
    return LocalFileSystem(basepath=path)


def result_filesystem(project: Project) -> Any:
    """Where task results of `project` persist: Prefect writes there, the fast path reads there."""
    return _result_filesystem(project.results_storage)


@lru_cache(maxsize=32)
def _result_store(location: str) -> Any:
    from prefect.results import ResultStore

    return ResultStore(result_storage=_result_filesystem(location), cache_result_in_memory=False)


def result_store(project: Project) -> Any:
    """A Prefect `ResultStore` on the project's result storage."""
    return _result_store(project.results_storage)


def read_result_bytes(project: Project, key: str) -> bytes:
    """The raw result record under `key`; FileNotFoundError when there is none."""
    location = project.results_storage
    if "://" in location and not location.startswith("file://"):
        import fsspec

        fs, base = fsspec.core.url_to_fs(location)
        try:
            return fs.cat_file(f"{base.rstrip('/')}/{key}")
        except (FileNotFoundError, KeyError):
            raise FileNotFoundError(key) from None
    return (Path(location.removeprefix("file://")) / key).read_bytes()


MISS = object()  # what read_result returns for no usable record


def read_result(project: Project, key: str) -> Any:
    """The cached value under `key` in the project's result storage, or `MISS`.

    Reads the record file directly (one open, no path resolution: Prefect's `ResultStore.read`
    resolves the path three times, which dominated a warm `.map`). A record that cannot be read
    (truncated, written by an incompatible version) is a miss with a warning: the task runs
    again and overwrites it.
    """
    from prefect.results import ResultRecord

    try:
        data = read_result_bytes(project, key)
    except FileNotFoundError:
        return MISS
    try:
        record: ResultRecord[Any] = ResultRecord.deserialize(data)
        value = record.result
    except Exception as exc:  # a corrupt record must never fail the run
        warnings.warn(
            f"Cached result '{key}' under {project.results_storage} could not be read "
            f"({type(exc).__name__}: {exc}); the task will run again and replace it.",
            RuntimeWarning,
            stacklevel=2,
        )
        return MISS
    expiration = record.metadata.expiration
    if expiration is not None and expiration.timestamp() <= time.time():
        return MISS
    return value


def forget_result(project: Project, key: str) -> None:
    """Delete the stored result under `key`, if any (local directory or fsspec URL)."""
    location = project.results_storage
    if "://" in location and not location.startswith("file://"):
        import fsspec

        fs, base = fsspec.core.url_to_fs(location)
        path = f"{base.rstrip('/')}/{key}"
        if fs.exists(path):
            fs.rm(path)
        return
    (Path(location.removeprefix("file://")) / key).unlink(missing_ok=True)


@lru_cache(maxsize=32)
def _task_index(directory: str) -> CacheStore:
    return CacheStore(directory, default_expire=None)


def task_index(project: Project) -> CacheStore:
    """Small side store: which task made each cached result, and which params each task read."""
    return _task_index(str(project.cache_dir / "tasks"))


def max_in_flight(project: Project, task_limit: int | None) -> int:
    """How many task runs one `.map` keeps in flight: per task, else latent.toml, else sized."""
    if task_limit:
        return task_limit
    configured = project.settings.prefect.max_in_flight
    if configured:
        return configured
    return max(8, 8 * (os.cpu_count() or 1))


@contextmanager
def param_overrides(flow: str, overrides: Sequence[str] | Mapping[str, Any]) -> Iterator[None]:
    """Give `overrides` to the next run of `flow` in this context (used by `latent run`)."""
    token = _overrides.set({**(_overrides.get() or {}), flow: overrides})
    try:
        yield
    finally:
        _overrides.reset(token)


def overrides_for(flow: str) -> Sequence[str] | Mapping[str, Any] | None:
    return (_overrides.get() or {}).get(flow)


class ServerPace:
    """Keeps a large `.map` from running ahead of what the Prefect server has recorded.

    Prefect's server takes task-run state changes as events through an in-memory queue of 10,000
    messages; a map whose tasks finish faster than the server records them overflows it, and the
    server drops task-run records (seen here: 660 of 10,000 recorded). Every `check_every`
    submissions this asks the server how many task runs of the flow run reached a final state and
    waits while more than `max_lag` are unrecorded (bounded: a server that stops answering only
    costs `max_wait_s` once, with a warning).
    """

    FINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")

    # About five events per task run: 1,000 unrecorded task runs fill half the server's queue.
    def __init__(self, flow_run_id: Any, *, max_lag: int = 1000, check_every: int = 200) -> None:
        self.flow_run_id = flow_run_id
        self.max_lag = max_lag
        self.check_every = check_every
        self.max_wait_s = 60.0
        self.submitted = 0
        self.baseline: int | None = None
        self.gave_up = False

    @classmethod
    def for_map(cls, calls: int) -> ServerPace | _NoPace:
        from prefect.context import FlowRunContext

        ctx = FlowRunContext.get()
        if calls <= 2000 or ctx is None or ctx.flow_run is None:
            return _NoPace()
        return cls(ctx.flow_run.id)

    def before_submit(self) -> None:
        if self.baseline is None:
            self.baseline = self._recorded() or 0
        self.submitted += 1
        if self.gave_up or self.submitted % self.check_every:
            return
        self._wait_until(self.submitted - self.max_lag)

    def finish(self, in_flight: Iterable[Any]) -> None:
        """Wait until the server has recorded every task run of the map (bounded)."""
        for future in in_flight:
            future.wait()
        if self.submitted and not self.gave_up:
            self._wait_until(self.submitted)

    def _wait_until(self, target: int) -> None:
        assert self.baseline is not None
        deadline = time.monotonic() + self.max_wait_s
        while time.monotonic() < deadline:
            recorded = self._recorded()
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

    def _recorded(self) -> int | None:
        from prefect.client.orchestration import get_client

        body = {
            "flow_runs": {"id": {"any_": [str(self.flow_run_id)]}},
            "task_runs": {"state": {"type": {"any_": list(self.FINAL)}}},
        }
        try:
            with get_client(sync_client=True) as client:
                return int(client.request("POST", "/task_runs/count", json=body).json())
        except Exception:
            return None


class _NoPace:
    def before_submit(self) -> None:
        return None

    def finish(self, in_flight: Iterable[Any]) -> None:
        return None
