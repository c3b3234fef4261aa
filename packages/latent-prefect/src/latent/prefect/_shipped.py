"""Task runs in other processes (Dask, Ray, Prefect's process pool): what goes, what comes back.

Context variables do not cross processes. The task object a runner pickles carries a
`ShippedRun`: the flow's project, parameters and a link to its MLflow trace, from which the
worker rebuilds the run (``params``, catalog, cache keys, checkpoints, spans). What the flow's
process needs back (how long the body ran, rows in and out) rides on the task's final Prefect
state as its message, which Prefect also shows in its UI; the flow's process turns it into
metrics and `latent run`'s summary row, exactly as for a task run in its own threads.
"""

from __future__ import annotations

import contextvars
import functools
import importlib
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from latent.config import Project, RunConfig
from latent.observe import TraceLink, trace_link
from latent.prefect import _prefect_compat
from latent.prefect._importpath import FLOW_MODULE_PREFIX
from latent.prefect._summary import account
from prefect.states import Completed, State


@dataclass(frozen=True)
class ShippedRun:
    """What a task run in another process needs of its flow's run; small and picklable."""

    root: str
    flow: str
    parameters: dict[str, Any]
    typed: Any
    trace: TraceLink | None = None

    @classmethod
    def of(cls, run: RunConfig) -> ShippedRun:
        return cls(str(run.project.root), run.flow, run.parameters, run.typed, trace_link())

    def rebuild(self) -> RunConfig:
        from latent.prefect._runtime import prepare

        project = prepare(Project(Path(self.root)))
        return RunConfig(
            flow=self.flow,
            parameters=self.parameters,
            typed=self.typed,
            project=project,
            catalog=project.catalog(self.flow),
        )


_by_value: set[tuple[str, str]] = set()


def ship_by_value(module_name: str) -> None:
    """Pickle a flow file's module by value, for every cloudpickle a runner may use.

    Dask and Prefect's process pool use cloudpickle; Ray has its own copy. Ray's is
    registered once `ray` is imported, which a `RayTaskRunner` does before its first task.
    """
    module = sys.modules.get(module_name)
    if module is None or not module_name.startswith(FLOW_MODULE_PREFIX):
        return
    picklers = ["cloudpickle"] + (["ray.cloudpickle"] if "ray" in sys.modules else [])
    for pickler_name in picklers:
        if (pickler_name, module_name) in _by_value:
            continue
        try:
            pickler = importlib.import_module(pickler_name)
            pickler.register_pickle_by_value(module)
        except (ImportError, AttributeError, ValueError):
            continue
        _by_value.add((pickler_name, module_name))


def configured_runner(project: Project) -> Any | None:
    """The task runner `[prefect.task_runner]` asks for; None for Prefect's default threads.

    Raises ConfigFileError naming latent.toml when the runner's package is not installed.
    """
    from latent.config import ConfigFileError

    chosen = project.settings.prefect.task_runner
    kind, workers, address = chosen.type, chosen.workers, chosen.address
    if kind == "threads":
        if workers is None:
            return None
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=workers)
    if kind == "processes":
        from prefect.task_runners import ProcessPoolTaskRunner

        return ProcessPoolTaskRunner(max_workers=workers)
    extra = {"dask": "prefect_dask", "ray": "prefect_ray"}[kind]
    try:
        module = importlib.import_module(extra)
    except ImportError as exc:
        raise ConfigFileError(
            f"{project.settings_file}: [prefect.task_runner] type = {kind!r} needs "
            f"{extra.replace('_', '-')} ({exc}). Install it with "
            f"`pip install 'latent-prefect[{kind}]'`, or choose type = \"threads\" or "
            '"processes".'
        ) from exc
    if kind == "dask":
        if address:
            return module.DaskTaskRunner(address=address)
        cluster: dict[str, Any] = {"processes": True, "threads_per_worker": 1}
        if workers is not None:
            cluster["n_workers"] = workers
        return module.DaskTaskRunner(cluster_kwargs=cluster)
    init: dict[str, Any] = {"num_cpus": workers} if workers is not None and not address else {}
    return module.RayTaskRunner(address=address, init_kwargs=init)


def runs_in_this_process(runner: Any) -> bool:
    """True for Prefect's thread pool (context variables reach its workers)."""
    from prefect.task_runners import ThreadPoolTaskRunner

    return isinstance(runner, ThreadPoolTaskRunner)


_OUTCOME = re.compile(
    r"^Latent: ran in (?P<d>[0-9.]+) s(?:; rows in (?P<i>\d+))?(?:; rows out (?P<o>\d+))?$"
)


@dataclass(frozen=True)
class Outcome:
    """What one successful body call did, as the flow's process records it."""

    duration_s: float
    rows_in: int | None
    rows_out: int | None

    def message(self) -> str:
        text = f"Latent: ran in {self.duration_s:.6f} s"
        if self.rows_in is not None:
            text += f"; rows in {self.rows_in}"
        if self.rows_out is not None:
            text += f"; rows out {self.rows_out}"
        return text

    @classmethod
    def from_message(cls, message: str | None) -> Outcome | None:
        match = _OUTCOME.match(message or "")
        if match is None:
            return None
        rows_in, rows_out = match["i"], match["o"]
        return cls(
            float(match["d"]),
            int(rows_in) if rows_in is not None else None,
            int(rows_out) if rows_out is not None else None,
        )

    def state(self, result: Any) -> State[Any]:
        """The final state a worker's body returns: Prefect stores `result`, as for a value."""
        return Completed(data=result, message=self.message())


def account_when_done(future: Any, name: str) -> None:
    """Record what a shipped task run did once its future finishes (in the flow's context)."""
    context = contextvars.copy_context()  # the callback runs on the runner's own thread
    future.add_done_callback(functools.partial(_account, context, name))


def _account(context: contextvars.Context, name: str, future: Any) -> None:
    try:
        state = _prefect_compat.runner_final_state(future)
    except Exception:
        return
    if isinstance(state, State):
        context.copy().run(_account_state, name, state)


def _account_state(name: str, state: State[Any]) -> None:
    if state.name == "Cached":
        account(name, "Cached")
    elif state.is_completed():
        outcome = Outcome.from_message(state.message) or Outcome(0.0, None, None)
        account(
            name,
            "Completed",
            outcome.duration_s,
            rows_in=outcome.rows_in,
            rows_out=outcome.rows_out,
        )
    elif state.is_failed() or state.is_crashed():
        account(name, "Failed")
