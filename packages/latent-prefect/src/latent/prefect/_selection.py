"""Which tasks a run may execute (`latent run --only/--from/--to`), and the gate that answers
the calls of the others.

Flow bodies are ordinary Python, not a declared graph, so a selection cannot prune a DAG. It
says which tasks MAY EXECUTE in this run: a call of a task outside the selection is answered
from the cache — a stored result for its arguments, its `output` file made to agree, exactly
as a full run would serve it — and with nothing stored the run stops with one line
(`TaskNotSelectedError`) naming the task, the selection and the option that adds it. Selected
tasks run as always, so a hit still hits: a selection is not `--force`.

`--from X` / `--to Y` count in the flows' task order: the order the last run called them
(`registry.json`, see `latent.registry`), then the tasks defined in the flow file that it did
not call, in definition order. The flows of one command are one sequence, in the order given.
`--only` adds tasks to the `--from/--to` range (so `--from evaluate --only prepare` runs
`prepare` too).

A gate is active for a run through a context variable that the task calling surface reads
(`LatentTask.__call__`, `.submit`, `.map`); the dry run (`_dry_run`) is a gate that answers
every task.
"""

from __future__ import annotations

import abc
import json
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from latent.cache import hash_once
from latent.config import Project, current_run
from latent.observe import cached_rows, cached_span
from latent.prefect import _execute, _prefect_compat, _registry_file
from latent.prefect._futures import RowFuture
from latent.prefect._summary import account
from latent.prefect._task_cache import cache_for
from latent.prefect.errors import TaskNotSelectedError, TaskSelectionError
from prefect.futures import PrefectFuture, PrefectFutureList
from prefect.states import Completed
from prefect.utilities.annotations import BaseAnnotation

if TYPE_CHECKING:
    from latent.prefect._flow import LatentFlow
    from latent.prefect._task import LatentTask

__all__ = ["Answer", "Gate", "Selection", "SelectionGate", "active", "gate_for", "gated"]

#: Keywords of a Prefect call that are not arguments of the task.
_CALL_OPTIONS = ("return_state", "wait_for")


@dataclass(frozen=True)
class Selection:
    """What `--only`, `--from` and `--to` asked for (names as given; checked by `tasks`)."""

    only: tuple[str, ...] = ()
    start: str | None = None
    end: str | None = None

    @classmethod
    def of(cls, only: Sequence[str] | None, start: str | None, end: str | None) -> Selection | None:
        """The selection of the options given (`--only a,b` and `--only a --only b` alike);
        None when none was."""
        names = tuple(n.strip() for given in only or () for n in given.split(",") if n.strip())
        if not names and start is None and end is None:
            return None
        return cls(names, start, end)

    def describe(self) -> str:
        """The options as typed: ``--only a,b --from x``."""
        parts = [f"--only {','.join(self.only)}"] if self.only else []
        parts += [f"{flag} {name}" for flag, name in self._bounds()]
        return " ".join(parts)

    def tasks(self, order: Sequence[str]) -> frozenset[str]:
        """The names selected among `order`; TaskSelectionError for a name it does not have."""
        from latent.config._suggest import did_you_mean

        for flag, name in [*(("--only", n) for n in self.only), *self._bounds()]:
            if name not in order:
                known = ", ".join(repr(n) for n in order) or "none"
                raise TaskSelectionError(
                    f"{flag} {name}: no task '{name}' in the flows of this run (tasks, in order: "
                    f"{known}).{did_you_mean(name, order)}"
                )
        chosen = set(self.only)
        if self.start is not None or self.end is not None:
            first = order.index(self.start) if self.start is not None else 0
            last = order.index(self.end) if self.end is not None else len(order) - 1
            if first > last:
                raise TaskSelectionError(
                    f"--from {self.start} --to {self.end} selects no task: '{self.start}' comes "
                    f"after '{self.end}' (tasks, in order: {', '.join(map(repr, order))})."
                )
            chosen.update(order[first : last + 1])
        return frozenset(chosen)

    def hint(self, task: str) -> str:
        """How to let `task` run: the option to add (and the one to drop)."""
        add = f"add it with --only {','.join([*self.only, task])}"
        flags = " and ".join(flag for flag, _ in self._bounds())
        return f"run without {flags}, or {add}" if flags else add

    def _bounds(self) -> list[tuple[str, str]]:
        pairs = (("--from", self.start), ("--to", self.end))
        return [(flag, name) for flag, name in pairs if name is not None]


# -- the flows' task order ---------------------------------------------------------------------


def task_order(project: Project, flows: Sequence[tuple[str, LatentFlow[Any, Any]]]) -> list[str]:
    """The tasks of `flows` in run order: as the last run called them, then as defined."""
    saved = _saved_flows(project)
    order: list[str] = []
    for name, flow_obj in flows:
        for task in [*_recorded(saved, name), *_defined(flow_obj)]:
            if task not in order:
                order.append(task)
    return order


def _saved_flows(project: Project) -> Mapping[str, Any]:
    """The flows of `registry.json` (format 1 of `TaskRegistry.to_dict`); none if unreadable."""
    try:
        data = json.loads(_registry_file.registry_file(project).read_text())
        flows = data["flows"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    return flows if isinstance(flows, dict) else {}


def _recorded(saved: Mapping[str, Any], flow: str) -> list[str]:
    """`flow`'s tasks in the order its last run called them, then its subflows' tasks."""
    names: list[str] = []
    walked = [flow]
    for name in walked:  # grows while it walks: the flow, its subflows, theirs
        entry = saved.get(name)
        if not isinstance(entry, dict):
            continue
        names += [t["name"] for t in entry.get("tasks", ()) if isinstance(t, dict) and "name" in t]
        walked += [c for c, e in saved.items() if isinstance(e, dict) and e.get("parent") == name]
    return names


def _defined(flow_obj: LatentFlow[Any, Any]) -> list[str]:
    """The tasks the flow's file defines or imports, in the order they appear in it."""
    from latent.prefect._task import LatentTask

    module = sys.modules.get(getattr(flow_obj.fn, "__module__", ""))
    if module is None:
        return []
    return [v.spec.name for v in vars(module).values() if isinstance(v, LatentTask) and v.spec]


# -- gates ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """What a gate answers one call (or mapped row) with: its value and its cache key."""

    value: Any
    key: str | None = None


class Gate(abc.ABC):
    """Answers the calls of the tasks it `answers` without executing them; subclasses say how
    (`answer`). The calling surface hands over a call, a `.submit` or a whole `.map`."""

    #: Whether flows called inside the run come here too (`subflow`; the dry run's).
    takes_flows = False

    @abc.abstractmethod
    def answers(self, task: str) -> bool:
        """Whether this gate answers the calls of `task` (else they run as always)."""

    @abc.abstractmethod
    def answer(
        self, task: LatentTask[Any, Any], calls: list[dict[str, Any]], *, mapped: bool
    ) -> list[Answer]:
        """One answer per call (each call's arguments keyed by parameter name)."""

    def unexpandable(self, task: LatentTask[Any, Any], value: Any) -> Any:
        """What `.map` over `value`, which cannot be iterated yet, returns (a dry run's
        placeholder; only a dry run holds one)."""
        raise TypeError(f"task '{task.name}' cannot be mapped over {value!r}")

    def subflow(
        self, flow: LatentFlow[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """Run a flow called inside the run (only when `takes_flows`)."""
        raise NotImplementedError

    # -- the calling surface -----------------------------------------------------------------

    def call(
        self, task: LatentTask[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """`task(*args, **kwargs)`: the value (a Completed state with `return_state=True`)."""
        answer, return_state = self._single(task, args, kwargs)
        return Completed(data=answer.value, name="Cached") if return_state else answer.value

    def submit(
        self, task: LatentTask[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """`task.submit(...)`: a finished future (its state with `return_state=True`)."""
        answer, return_state = self._single(task, args, kwargs)
        future = _finished(task, answer)
        return future.state if return_state else future

    def map(
        self,
        task: LatentTask[Any, Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        return_state: bool = False,
    ) -> Any:
        """`task.map(...)`: one finished future per row (their states with `return_state`)."""
        parameters = _prefect_compat.call_parameters(task.fn, args, kwargs)
        for value in parameters.values():
            if _unresolved(value):
                return self.unexpandable(task, value)
        calls, _ = task.row_calls(parameters)
        answers = self.answer(task, calls, mapped=True)
        futures = [_finished(task, answer, row) for row, answer in enumerate(answers)]
        if return_state:
            return [future.state for future in futures]
        return PrefectFutureList(futures)  # type: ignore[abstract]

    def _single(
        self, task: LatentTask[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[Answer, bool]:
        return_state = bool(kwargs.get("return_state"))
        kwargs = {k: v for k, v in kwargs.items() if k not in _CALL_OPTIONS}
        args, kwargs = _resolved(args), _resolved(kwargs)
        parameters = _execute.call_arguments(task.require_spec().fn, args, kwargs)
        [answer] = self.answer(task, [parameters], mapped=False)
        return answer, return_state


class SelectionGate(Gate):
    """`--only/--from/--to`: a task outside `selected` is answered from the cache or stops the
    run (see the module docstring)."""

    def __init__(self, selection: Selection, selected: frozenset[str]) -> None:
        self.selection = selection
        self.selected = selected

    def answers(self, task: str) -> bool:
        return task not in self.selected

    def refusal(self, task: str, what: str) -> str:
        """The one line a run stops with when `task`, not selected, would have to run."""
        return (
            f"task '{task}' is not selected ({self.selection.describe()}) and {what}; "
            f"{self.selection.hint(task)}"
        )

    def answer(
        self, task: LatentTask[Any, Any], calls: list[dict[str, Any]], *, mapped: bool
    ) -> list[Answer]:
        spec = task.require_spec()
        run = current_run()
        assert run is not None  # `gate_for` answers inside a run only
        if not spec.cache:
            raise TaskNotSelectedError(self.refusal(spec.name, "has cache=False (nothing stored)"))
        cache = cache_for(run.project)
        with hash_once():
            probes = [cache.probe(spec, call, run.catalog) for call in calls]
        missing = sum(1 for probe in probes if not probe.hit)
        if missing:
            what = (
                f"has no cached result for {missing} of its {len(calls)} rows"
                if mapped
                else "has no cached result for these inputs"
            )
            raise TaskNotSelectedError(self.refusal(spec.name, what))
        for _ in probes:
            account(spec.name, "Cached")
        if mapped:
            rows = [(i, _execute.row_id(call)) for i, call in enumerate(calls)]
            cached_rows(spec.name, rows, total=len(calls), span_type=spec.span_type)
        else:
            cached_span(spec.name, spec.span_type, cache_key=probes[0].key)
        return [Answer(probe.value, probe.key) for probe in probes]


_gate: ContextVar[Gate | None] = ContextVar("latent_gate", default=None)


@contextmanager
def gated(gate: Gate | None) -> Iterator[None]:
    """Make `gate` answer the task calls of the run in this block (None: every task runs)."""
    token = _gate.set(gate)
    try:
        yield
    finally:
        _gate.reset(token)


def active() -> Gate | None:
    """The gate of the run in this context, if any."""
    return _gate.get()


def gate_for(task: str) -> Gate | None:
    """The gate that answers a call of `task` in this context, or None: the call runs as always."""
    gate = _gate.get()
    if gate is None or current_run() is None or not gate.answers(task):
        return None
    return gate


# -- pieces ---------------------------------------------------------------------------------------


def _finished(task: LatentTask[Any, Any], answer: Answer, row: int | None = None) -> RowFuture[Any]:
    future: RowFuture[Any] = RowFuture(task.require_spec().name, row)
    future.set_cached(answer.value, answer.key or "")
    return future


def _resolved(value: Any, depth: int = 0) -> Any:
    """`value` with the futures in it (two levels down) replaced by their results, as Prefect
    resolves a task run's arguments."""
    if isinstance(value, PrefectFuture):
        return value.result()
    if depth > 2 or not _holds_future(value):
        return value
    if isinstance(value, dict):
        return {k: _resolved(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolved(v, depth + 1) for v in value]
    if isinstance(value, tuple) and not hasattr(value, "_fields"):
        return tuple(_resolved(v, depth + 1) for v in value)
    return value


def _holds_future(value: Any, depth: int = 0) -> bool:
    if isinstance(value, PrefectFuture):
        return True
    if depth > 2:
        return False
    if isinstance(value, dict):
        return any(_holds_future(v, depth + 1) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(_holds_future(v, depth + 1) for v in value)
    return False


def _unresolved(value: Any) -> bool:
    """A mapped argument that is not data yet (a dry run's placeholder for a result)."""
    if isinstance(value, BaseAnnotation):  # unmapped(...): not iterated
        return False
    if isinstance(value, PrefectFuture):
        value = value.result()
    return bool(getattr(type(value), "is_placeholder", False))
