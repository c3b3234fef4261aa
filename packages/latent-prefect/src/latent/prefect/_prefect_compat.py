"""The one seam between Latent and Prefect's private or unstable APIs.

Everything Latent needs from Prefect that is not its documented public surface is reached
through this module, each use with a comment saying what it is for, and pinned by
`tests/test_prefect_compat.py`, which fails loudly against a Prefect release that moved a symbol.
Public APIs (`prefect.flow`, `Task`, `PrefectFuture`, states, `get_client`, task runners) are
used directly elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# `.map` keeps Prefect's exact semantics for what is mapped (iterables, `unmapped`,
# `allow_failure`, `quote`, `**kwargs`) and for futures passed as arguments; these helpers are
# what `Task.map` itself uses, from modules Prefect does not document.
from prefect.utilities.callables import expand_mapping_parameters, get_call_parameters
from prefect.utilities.engine import collect_task_run_inputs_sync, resolve_inputs_sync

__all__ = [
    "call_parameters",
    "count_final_task_runs",
    "expand_map",
    "final_state_property",
    "runner_final_state",
    "with_options_as",
]


def call_parameters(fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """Arguments of a call keyed by parameter name, as Prefect binds them for a task run."""
    return get_call_parameters(fn, args, kwargs, apply_defaults=False)


def expand_map(fn: Any, parameters: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One parameters dict per mapped call, and the upstream task runs they depend on.

    Futures among the arguments are waited for and replaced by their results, as `Task.map`
    does; the dependencies let the server draw the edges.
    """
    dependencies = {k: collect_task_run_inputs_sync(v, max_depth=0) for k, v in parameters.items()}
    resolved = resolve_inputs_sync(parameters, max_depth=0)
    return expand_mapping_parameters(fn, resolved), dependencies


def set_final_state(future: Any, state: Any) -> None:
    """Prefect's `wait` and `as_completed` read `future._final_state` to see a done future."""
    future._final_state = state


def final_state_property(build: Callable[[Any], Any]) -> Any:
    """`_final_state` for a future class, built by `build(future)` when Prefect reads it.

    Prefect's `wait` and `as_completed` read `future._final_state`; a map's 10,000 row futures
    need no 10,000 `State` objects unless someone looks.
    """
    return property(build)


def final_state_of(future: Any) -> Any:
    return getattr(future, "_final_state", None)


def runner_final_state(future: Any) -> Any:
    """A finished task run's final state from the runner's own future, with no server call.

    Thread, process and Dask futures keep it as the result of `wrapped_future`; a Ray future
    keeps it in `_final_state` once `wait` has read it.
    """
    wrapped = getattr(future, "wrapped_future", None)
    getter = getattr(wrapped, "result", None)
    if callable(getter):
        return getter()
    future.wait(0)
    return getattr(future, "_final_state", None)


def with_options_as(flow: Any, cls: type, **kwargs: Any) -> Any:
    """`flow.with_options(...)` as an instance of `cls`: Prefect's builds a plain `Flow` with
    every attribute but our subclass's; the copy gets our class back."""
    new = flow.with_options(**kwargs)
    new.__class__ = cls
    return new


def count_final_task_runs(flow_run_id: Any) -> int | None:
    """How many task runs of a flow run the server has recorded in a final state.

    The client has no count method; this is the REST route the UI uses (`/task_runs/count`).
    None when the server does not answer.
    """
    from prefect.client.orchestration import get_client

    body = {
        "flow_runs": {"id": {"any_": [str(flow_run_id)]}},
        "task_runs": {"state": {"type": {"any_": ["COMPLETED", "FAILED", "CRASHED", "CANCELLED"]}}},
    }
    try:
        with get_client(sync_client=True) as client:
            return int(client.request("POST", "/task_runs/count", json=body).json())
    except Exception:
        return None
