"""`TaskRegistry`: the record of flows, their tasks and their datasets, per run and per process.

A run replaces its flow's part (`start_flow`), so a removed task or dataset disappears from the
picture at the next run; `save_flows` writes just those parts into the project's saved registry.
A run registers inside `TaskRegistry.run()`: its own registry (a context variable, so two runs on
threads or coroutines of one process, of one project or two, never see each other's), published
to the process-wide one when the run ends, which is what `print_ascii()` after a run draws.
Drawing in a process that registered nothing reads the saved registry, found through the
``latent.registry`` entry point ``saved_registry`` (latent-prefect provides it: latent-observe
does not know where a project keeps its files).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextvars import ContextVar
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, TextIO

from latent.registry._render import render_ascii, render_dot, render_mermaid
from latent.registry.errors import RegistryFileError

FORMAT_VERSION = 1


def _union(existing: list[str], new: Iterable[str]) -> None:
    """Append the names of `new` not yet in `existing`, keeping first-seen order."""
    for name in new:
        if name not in existing:
            existing.append(name)


class _Contents:
    """One registry's flows (by name, in registration order) under its own lock."""

    def __init__(self) -> None:
        self.flows: dict[str, dict[str, Any]] = {}
        self.lock = threading.RLock()
        self.started: list[str] = []  # flows whose part a run rebuilt here (`start_flow`)


_PROCESS = _Contents()
_RUN: ContextVar[_Contents | None] = ContextVar("latent_task_registry_run", default=None)


def _active() -> _Contents:
    """The registry of the run around the caller, else the process-wide one."""
    return _RUN.get() or _PROCESS


class TaskRegistry:
    """Flows, their tasks in first-call order, and each task's input/output datasets.

    Thread-safe class methods on the registry of the current run (`run()`), or outside any run on
    the process-wide one (latent-prefect registers on each call; registering again is a no-op
    that only adds new datasets). Snapshot with `to_dict()` / `save()` so a later process can
    `load()` and draw the pipeline. Besides datasets, a flow records data edges: one task's
    output passed to another as an argument.
    """

    @classmethod
    @contextlib.contextmanager
    def run(cls) -> Iterator[None]:
        """Register into a registry of one run for the duration (threads and coroutines it
        starts inherit it); at the end, the flows it rebuilt replace theirs in the process-wide
        registry, and the flows it loaded (`save_flows`) fill what the process does not have.

        Nested inside another run's scope it is that run's (a subflow is part of its parent).
        """
        if _RUN.get() is not None:
            yield
            return
        mine = _Contents()
        token = _RUN.set(mine)
        try:
            yield
        finally:
            _RUN.reset(token)
            _publish(mine)

    @classmethod
    def register_flow(
        cls,
        flow: str,
        *,
        inputs: Sequence[str] = (),
        outputs: Sequence[str] = (),
        parent: str | None = None,
    ) -> None:
        """Record a flow (idempotent): its catalog inputs/outputs and, for a subflow, its parent."""
        registry = _active()
        with registry.lock:
            entry = _flow_entry(registry, flow)
            _union(entry["inputs"], inputs)
            _union(entry["outputs"], outputs)
            if parent is not None and parent != flow:
                entry["parent"] = parent

    @classmethod
    def start_flow(
        cls,
        flow: str,
        *,
        inputs: Sequence[str] = (),
        outputs: Sequence[str] = (),
        parent: str | None = None,
    ) -> None:
        """Record that `flow` starts a run: its part of the registry is rebuilt from now on.

        Tasks, datasets and edges of earlier runs are dropped, and so are the subflows it ran, so
        what the picture shows is what the latest run did. (A subflow called twice in one run
        registers the same tasks again.)
        """
        registry = _active()
        with registry.lock:
            _drop_with_subflows(registry, flow)
            if flow not in registry.started:
                registry.started.append(flow)
            cls.register_flow(flow, inputs=inputs, outputs=outputs, parent=parent)

    @classmethod
    def register_edge(cls, flow: str, from_task: str, to_task: str) -> None:
        """Record that `to_task` received `from_task`'s output as an argument (idempotent).

        Both tasks are of `flow`; a task not registered yet is added (in call order). Drawn as a
        dashed arrow, unless the two tasks are already joined through a dataset.
        """
        if from_task == to_task:
            return
        registry = _active()
        with registry.lock:
            entry = _flow_entry(registry, flow)
            for task in (from_task, to_task):
                cls.register_task(flow, task)
            if [from_task, to_task] not in entry["edges"]:
                entry["edges"].append([from_task, to_task])

    @classmethod
    def register_task(
        cls, flow: str, task: str, *, inputs: Sequence[str] = (), outputs: Sequence[str] = ()
    ) -> None:
        """Record a task of `flow` in first-call order (idempotent; new datasets are added)."""
        registry = _active()
        with registry.lock:
            tasks = _flow_entry(registry, flow)["tasks"]
            entry = next((item for item in tasks if item["name"] == task), None)
            if entry is None:
                entry = {"name": task, "inputs": [], "outputs": []}
                tasks.append(entry)
            _union(entry["inputs"], inputs)
            _union(entry["outputs"], outputs)

    # -- drawings --------------------------------------------------------------------------------

    @classmethod
    def render_ascii(cls, *, emoji: bool = True) -> str:
        """The spec's "Canopy Pipeline Topology" tree; `emoji=False` for plain terminals."""
        return render_ascii(cls._drawn(), emoji=emoji)

    @classmethod
    def print_ascii(cls, *, emoji: bool = True, file: TextIO | None = None) -> None:
        """Print `render_ascii()` to `file` (stdout by default)."""
        print(cls.render_ascii(emoji=emoji), end="", file=file or sys.stdout)

    @classmethod
    def to_mermaid(cls) -> str:
        """The whole project as a Mermaid flowchart, with cross-flow dataset edges."""
        return render_mermaid(cls._drawn())

    @classmethod
    def to_dot(cls) -> str:
        """The whole project as Graphviz DOT, with cross-flow dataset edges."""
        return render_dot(cls._drawn())

    @classmethod
    def _drawn(cls) -> dict[str, Any]:
        """What the drawings show: this process's registry, else the project's saved one."""
        snapshot = cls.to_dict()
        if snapshot["flows"]:
            return snapshot
        path = saved_registry_file()
        if path is None or not path.is_file():
            return snapshot
        return {"version": FORMAT_VERSION, "flows": _read_flows(path)}

    # -- snapshots -------------------------------------------------------------------------------

    @classmethod
    def to_dict(cls) -> dict[str, Any]:
        """A JSON-able deep copy: ``{"version": 1, "flows": {name: {inputs, outputs, parent,
        tasks: [{name, inputs, outputs}], edges: [[from_task, to_task]]}}}``."""
        registry = _active()
        with registry.lock:
            return {"version": FORMAT_VERSION, "flows": json.loads(json.dumps(registry.flows))}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> None:
        """Replace the registry's contents with a `to_dict()` snapshot."""
        flows = _validated_flows(data, source="from_dict()")
        registry = _active()
        with registry.lock:
            registry.flows.clear()
            cls._merge(flows)

    @classmethod
    def merge_dict(cls, data: dict[str, Any]) -> None:
        """Add a snapshot's flows, tasks and datasets to what is registered (union, order kept)."""
        flows = _validated_flows(data, source="merge_dict()")
        with _active().lock:
            cls._merge(flows)

    @classmethod
    def _merge(cls, flows: dict[str, Any]) -> None:
        for name, flow in flows.items():
            cls.register_flow(
                name,
                inputs=flow.get("inputs", ()),
                outputs=flow.get("outputs", ()),
                parent=flow.get("parent"),
            )
            for task in flow.get("tasks", ()):
                cls.register_task(
                    name,
                    task["name"],
                    inputs=task.get("inputs", ()),
                    outputs=task.get("outputs", ()),
                )
            for edge in flow.get("edges", ()):
                if isinstance(edge, list) and len(edge) == 2:
                    cls.register_edge(name, str(edge[0]), str(edge[1]))

    @classmethod
    def save(cls, path: str | os.PathLike[str]) -> None:
        """Write `to_dict()` as JSON atomically (temp file + rename: no reader sees half a file)."""
        _write_json(Path(path), cls.to_dict())

    @classmethod
    def save_flows(cls, path: str | os.PathLike[str], flows: Iterable[str]) -> None:
        """Replace `flows`' parts of the saved registry at `path` with this process's; keep others.

        Each run saves the flows it ran, so the file is the latest run of every flow. A missing
        or unreadable file starts afresh. Afterwards this process holds the whole saved registry.
        Read and write happen under a lock on ``.<name>.lock`` beside the file (POSIX ``flock``),
        so processes saving different flows at once keep each other's.
        """
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        registry = _active()
        with _exclusive(target), registry.lock:  # two runs saving at once must not lose a flow
            try:
                saved = _read_flows(target) if target.is_file() else {}
            except RegistryFileError:
                saved = {}
            mine = cls.to_dict()["flows"]
            for name in flows:
                if name in mine:
                    saved.pop(name, None)  # a re-run flow moves to the end: latest last
                    saved[name] = mine[name]
            registry.flows.clear()
            cls._merge(saved)
            _write_json(target, cls.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> None:
        """Replace the registry's contents with a file written by `save()`."""
        flows = _read_flows(Path(path))
        registry = _active()
        with registry.lock:
            registry.flows.clear()
            cls._merge(flows)

    @classmethod
    def clear(cls) -> None:
        """Forget every flow and task (tests, or before loading another project's registry)."""
        registry = _active()
        with registry.lock:
            registry.flows.clear()
            registry.started.clear()


def _flow_entry(registry: _Contents, flow: str) -> dict[str, Any]:
    entry = registry.flows.get(flow)
    if entry is None:
        entry = registry.flows[flow] = {
            "inputs": [],
            "outputs": [],
            "parent": None,
            "tasks": [],
            "edges": [],
        }
    return entry


def _drop_with_subflows(registry: _Contents, flow: str) -> None:
    """Forget `flow`, then the subflows it ran last time, and theirs."""
    dropped = [flow]
    for name in dropped:
        dropped.extend(
            child
            for child, entry in registry.flows.items()
            if entry.get("parent") == name and child not in dropped
        )
    for name in dropped:
        registry.flows.pop(name, None)


def _publish(run: _Contents) -> None:
    """Hand a finished run's registry to the process-wide one (see `TaskRegistry.run`)."""
    with run.lock:
        flows = json.loads(json.dumps(run.flows))
        rebuilt = set(run.started)
    with _PROCESS.lock:
        for name in run.started:
            if flows.get(name, {}).get("parent") is None:
                _drop_with_subflows(_PROCESS, name)  # the latest run of a flow moves to the end
        for name, entry in flows.items():
            if name in rebuilt:
                _PROCESS.flows.pop(name, None)
                _PROCESS.flows[name] = entry
            else:
                _PROCESS.flows.setdefault(name, entry)


@contextlib.contextmanager
def _exclusive(target: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock beside `target` (a no-op where ``fcntl`` is missing)."""
    try:
        import fcntl
    except ImportError:  # Windows: saves are still atomic, a concurrent one may be lost
        yield
        return
    fd = os.open(target.parent / f".{target.name}.lock", os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _write_json(target: Path, data: dict[str, Any]) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temps(target)
    text = json.dumps(data, indent=2, ensure_ascii=False)
    # Not mkstemp: its files are 0600 whatever the umask. O_EXCL on a random name is as safe,
    # and the file gets the permissions a plain write would give.
    temp = target.parent / f".{target.name}.{uuid.uuid4().hex}.tmp"
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


_STARTED = time.time()


def _remove_stale_temps(target: Path) -> None:
    """Delete temp files a killed save of `target` left (written before this process started).

    A live writer's temp file exists for the milliseconds of one small write, so anything older
    than this process is litter.
    """
    for temp in target.parent.glob(f".{target.name}.*.tmp"):
        with contextlib.suppress(OSError):
            if temp.stat().st_mtime < _STARTED:
                temp.unlink()


def _read_flows(source: Path) -> dict[str, Any]:
    try:
        data = json.loads(source.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise RegistryFileError(
            f"Registry file {source} is not valid JSON ({exc}); delete it or re-save it"
        ) from exc
    return _validated_flows(data, source=str(source))


def saved_registry_file() -> Path | None:
    """The current project's saved registry, from the ``latent.registry`` entry point.

    Its ``saved_registry`` callable returns a path or None; without one (latent-observe alone)
    there is no saved registry to draw.
    """
    for point in entry_points(group="latent.registry", name="saved_registry"):
        try:
            locate: Callable[[], str | os.PathLike[str] | None] = point.load()
            found = locate()
        except Exception:  # drawing a picture must never fail for want of a saved one
            continue
        if found is not None:
            return Path(found)
    return None


def _validated_flows(data: Any, *, source: str) -> dict[str, Any]:
    flows = data.get("flows") if isinstance(data, dict) else None
    problem = None
    if not isinstance(flows, dict):
        problem = 'no "flows" mapping'
    else:
        for name, flow in flows.items():
            tasks = flow.get("tasks", []) if isinstance(flow, dict) else None
            if not isinstance(tasks, list) or not all(
                isinstance(task, dict) and isinstance(task.get("name"), str) for task in tasks
            ):
                problem = f"flow {name!r} has no list of named tasks"
                break
    if problem:
        raise RegistryFileError(
            f"Registry data from {source} is not a TaskRegistry snapshot ({problem}); "
            "write it with TaskRegistry.save() / to_dict()"
        )
    return flows  # type: ignore[return-value]
