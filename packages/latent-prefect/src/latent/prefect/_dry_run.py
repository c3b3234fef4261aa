"""`latent run --dry-run`: per task, whether it would run or hit the cache, and why — with
nothing run and nothing written.

The flow body runs as plain Python, outside Prefect and MLflow: no server is contacted (a dry
run answers in a second, and works while the server is down), no flow run is created on it, no
MLflow run is opened. `DryRun` is a gate (see `_selection`) that answers every task call
without executing its body:

- a stored result for the call's key (`TaskCache.peek`, the look-up that writes nothing):
  "cached", and the cached value is returned, so the body goes on with real data;
- a miss: "would run", with the lines `latent cache why` prints (`TaskCache.why`), and a
  `Pending` placeholder is returned;
- a call whose arguments hold a `Pending`: "would run: upstream 'x' would run" — whether it
  would hit depends on a result nobody has computed — and a `Pending` again; so is a task
  whose `input` dataset is the `output` of a task that would run;
- a flow body that uses a `Pending` as data (`len(p)`, `p["k"]`, `for x in p`, `if p:`) stops
  the dry run there: the tasks the last run called after that point are "unknown".

Nothing is written: no result, no miss explanation, no output dataset, no checkpoint, no
registry, no MLflow run. (Reading an input dataset may refresh the file-fingerprint index
under `.latent/cache`, as any cache look-up does.)
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn

from latent.cache import hash_once
from latent.config import RunConfig, bind_run, current_run
from latent.observe import bind_names
from latent.prefect import _lineage, _runtime
from latent.prefect._selection import Answer, Gate, SelectionGate, gated
from latent.prefect._task_cache import TaskCache, cache_for, cache_session

if TYPE_CHECKING:
    from latent.prefect._flow import LatentFlow
    from latent.prefect._task import LatentTask, TaskSpec

__all__ = ["DryRun", "Pending", "PendingValueUsed", "TaskLine"]


class PendingValueUsed(BaseException):
    """The flow body used the result of a task that would run as data: the dry run cannot
    follow the body past this point. A BaseException, so that an `except Exception` in the
    body does not carry on with a placeholder."""

    def __init__(self, task: str) -> None:
        super().__init__(f"the result of task '{task}', which would run, was used as data")
        self.task = task


class Pending:
    """The result of a task that would run, in a dry run: a placeholder, not data.

    Passing it to another task is fine (that task would run too); anything that needs its
    value (length, items, truth, arithmetic, attributes) raises `PendingValueUsed`.
    """

    __slots__ = ("task",)
    is_placeholder = True  # how `_selection` recognises it without importing this module

    def __init__(self, task: str) -> None:
        self.task = task

    def __repr__(self) -> str:
        return f"<result of task '{self.task}': it would run>"

    __str__ = __repr__
    __hash__ = object.__hash__

    def _used(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise PendingValueUsed(self.task)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # protocols probed by copy, pickle, inspect: absent
            raise AttributeError(name)
        raise PendingValueUsed(self.task)

    def __format__(self, spec: str) -> str:
        if spec:
            raise PendingValueUsed(self.task)
        return repr(self)

    __len__ = __iter__ = __getitem__ = __contains__ = __bool__ = __eq__ = __ne__ = _used
    __lt__ = __le__ = __gt__ = __ge__ = __int__ = __float__ = __index__ = __round__ = _used
    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = __truediv__ = _used
    __rtruediv__ = __floordiv__ = __mod__ = __pow__ = __neg__ = __abs__ = _used


@dataclass
class TaskLine:
    """One line of the dry run's table: what the calls (or rows) of one task would do."""

    flow: str
    task: str
    cached: int = 0
    would_run: int = 0
    refused: int = 0  # not selected, nothing cached: a real run would stop here
    mapped: bool = False
    rows_unknown: bool = False
    reasons: list[str] = field(default_factory=list)
    outcome_if_idle: str = ""  # "unknown" / "not called": the body never called the task

    @property
    def outcome(self) -> str:
        if self.outcome_if_idle:
            return self.outcome_if_idle
        if self.refused:
            return "not selected"
        return "would run" if self.would_run or self.rows_unknown else "cached"

    @property
    def counts(self) -> str:
        """``N cached / M would run`` for a map or a task called more than once."""
        if self.outcome_if_idle:
            return "-"
        if self.rows_unknown:
            return "? (upstream)"
        total = self.cached + self.would_run + self.refused
        if not self.mapped and total == 1:
            return "1"
        parts = [f"{self.cached} cached", f"{self.would_run} would run"]
        if self.refused:
            parts.append(f"{self.refused} not selected")
        return " / ".join(parts)

    def because(self, reason: str) -> None:
        if reason not in self.reasons:
            self.reasons.append(reason)


class DryRun(Gate):
    """The dry run of the flows of one `latent run` (see the module docstring)."""

    takes_flows = True

    def __init__(self, selection: SelectionGate | None = None) -> None:
        self.selection = selection
        self.lines: dict[tuple[str, str], TaskLine] = {}
        self.written_by: dict[str, str] = {}  # output dataset -> the task that would write it
        self.explained: set[str] = set()
        self.stopped_after: str | None = None  # the task whose Pending the body used
        self.stopped_by: str | None = None  # the error it raised, when not PendingValueUsed
        self.pending_made: list[str] = []

    # -- running a flow -----------------------------------------------------------------------

    def run_flow(self, flow: LatentFlow[Any, Any], order: Iterable[str]) -> list[TaskLine]:
        """Dry-run `flow` at the top level; its table lines (tasks it would not reach too)."""
        with gated(self):
            try:
                result = self.subflow(flow, (), {})
                if inspect.isawaitable(result):
                    asyncio.run(_awaited(result))
            except PendingValueUsed as used:
                self.stopped_after = used.task
            except Exception as exc:
                if not self.pending_made:  # no placeholder involved: the body's own error
                    raise
                self.stopped_after = self.pending_made[-1]
                self.stopped_by = f"{type(exc).__name__}: {exc}"
        assert flow.spec is not None
        return self._table(flow.spec.name, order)

    def subflow(
        self, flow: LatentFlow[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """Run a flow's body dry (a coroutine for an `async def` flow)."""
        spec = flow.spec
        assert spec is not None
        if inspect.iscoroutinefunction(spec.fn):
            return self._subflow_async(flow, args, kwargs)
        with self._inside(flow, args, kwargs) as bound:
            return spec.fn(*bound.args, **bound.kwargs)

    async def _subflow_async(
        self, flow: LatentFlow[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        assert flow.spec is not None
        with self._inside(flow, args, kwargs) as bound:
            return await flow.spec.fn(*bound.args, **bound.kwargs)

    @contextmanager
    def _inside(
        self, flow: LatentFlow[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Iterator[inspect.BoundArguments]:
        """The flow's run bound (parameters, catalog) and its inputs loaded, as `@flow` does —
        without Prefect, MLflow, outputs or the registry."""
        from latent.prefect._flow import _make_run

        spec = flow.spec
        assert spec is not None
        outer = current_run()
        project = outer.project if outer else _runtime.project_for(spec.fn)
        run = _make_run(spec, project, nested=outer is not None)
        with (
            bind_run(run),
            bind_names(flow=spec.name, task=None),
            cache_session(),
            _lineage.tracking(),
        ):
            bound = inspect.signature(spec.fn).bind_partial(*args, **kwargs)
            _load_inputs(spec.fn, spec.input, run, bound)
            yield bound

    # -- answering task calls -----------------------------------------------------------------

    def answers(self, task: str) -> bool:
        return True

    def answer(
        self, task: LatentTask[Any, Any], calls: list[dict[str, Any]], *, mapped: bool
    ) -> list[Answer]:
        spec = task.require_spec()
        run = current_run()
        assert run is not None
        line = self._line(run.flow, spec.name)
        line.mapped = line.mapped or mapped
        cache = cache_for(run.project) if spec.cache else None
        with hash_once():
            return [self._one(task, spec, run, cache, call, line) for call in calls]

    def unexpandable(self, task: LatentTask[Any, Any], value: Any) -> Any:
        spec = task.require_spec()
        run = current_run()
        assert run is not None
        line = self._line(run.flow, spec.name)
        line.mapped = line.rows_unknown = True
        line.because(f"upstream '{_pending_of(value).task}' would run (its rows are not known)")
        return self._pending(spec)

    def _one(
        self,
        task: LatentTask[Any, Any],
        spec: TaskSpec,
        run: RunConfig,
        cache: TaskCache | None,
        call: dict[str, Any],
        line: TaskLine,
    ) -> Answer:
        upstream = _first_pending(call.values())
        if upstream is not None:
            return self._would_run(spec, line, [f"upstream '{upstream.task}' would run"])
        written = self.written_by.get(spec.input or "")
        if written is not None and call.get(spec.input_param or "") is None:
            reason = f"its input '{spec.input}' is the output of '{written}', which would run"
            return self._would_run(spec, line, [reason])
        if cache is None:
            return self._would_run(spec, line, ["cache=False: it runs every time"])
        if task.refresh_cache is True:
            return self._would_run(spec, line, ["refresh_cache=True: it runs every time"])
        probe = cache.peek(spec, call, run.catalog)
        if probe.hit:
            line.cached += 1
            return Answer(probe.value, probe.key)
        if probe.key is None:
            why = ["not cacheable: an argument cannot be hashed, or its input dataset is missing"]
            return self._would_run(spec, line, why)
        reasons = [] if spec.name in self.explained else cache.why(spec, probe)
        self.explained.add(spec.name)
        return self._would_run(spec, line, reasons)

    def _would_run(self, spec: TaskSpec, line: TaskLine, reasons: list[str]) -> Answer:
        """A call that would run — or, outside `--only/--from/--to`, would stop the run."""
        if self.selection is not None and self.selection.answers(spec.name):
            line.refused += 1
            line.because(self.selection.refusal(spec.name, "may have no cached result"))
        else:
            line.would_run += 1
            if spec.output:
                self.written_by[spec.output] = spec.name
        for reason in reasons:
            line.because(reason)
        return Answer(self._pending(spec))

    def _pending(self, spec: TaskSpec) -> Pending:
        self.pending_made.append(spec.name)
        return Pending(spec.name)

    # -- the table ----------------------------------------------------------------------------

    def _line(self, flow: str, task: str) -> TaskLine:
        found = self.lines.get((flow, task))
        if found is None:
            found = self.lines[(flow, task)] = TaskLine(flow, task)
        return found

    def _table(self, flow: str, order: Iterable[str]) -> list[TaskLine]:
        lines = list(self.lines.values())
        seen = {line.task for line in lines}
        for task in order:
            if task in seen:
                continue
            idle = TaskLine(flow, task)
            if self.stopped_after is not None:
                idle.outcome_if_idle = "unknown"
                idle.because(f"not reached: the dry run stopped after '{self.stopped_after}'")
            else:
                idle.outcome_if_idle = "not called"
                idle.because("the flow body did not call it this time")
            lines.append(idle)
        return lines


def _load_inputs(
    fn: Any, inputs: tuple[str, ...], run: RunConfig, bound: inspect.BoundArguments
) -> None:
    """The flow's `input` datasets, loaded into the parameters not given (as `@flow` does)."""
    for param, dataset in zip(inspect.signature(fn).parameters, inputs, strict=False):
        if bound.arguments.get(param) is None:
            bound.arguments[param] = run.catalog.get(dataset).load()
        _lineage.note_dataset(bound.arguments.get(param), dataset)


def _first_pending(values: Iterable[Any], depth: int = 0) -> Pending | None:
    """The first `Pending` among `values` (and inside lists, tuples, dicts, two levels down)."""
    for value in values:
        if isinstance(value, Pending):
            return value
        if depth >= 2:
            continue
        inner = value.values() if isinstance(value, dict) else value
        if isinstance(inner, (list, tuple, set, frozenset, type({}.values()))):
            found = _first_pending(inner, depth + 1)
            if found is not None:
                return found
    return None


def _pending_of(value: Any) -> Pending:
    """The placeholder a mapped argument is (or a finished future holds)."""
    if isinstance(value, Pending):
        return value
    result = value.result()
    assert isinstance(result, Pending)
    return result


async def _awaited(awaitable: Any) -> Any:
    return await awaitable
