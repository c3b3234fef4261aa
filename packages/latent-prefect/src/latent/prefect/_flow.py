"""`@flow`: a Prefect flow that runs inside its Latent project.

Before the user's function runs, the flow finds its project, merges and validates parameters,
binds `params` for this run, opens the MLflow run and its root span, and loads `input` datasets;
after, it saves `output` datasets and the pipeline registry. Prefect's heartbeat thread is off by
default (`[prefect] heartbeat = true` turns it on): on a local run it only adds a second per flow.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import sys
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from typing import Any, Generic, ParamSpec, TypeVar

from pydantic import BaseModel

from latent.cache import checkpoints_for, fingerprint_paths
from latent.config import Project, RunConfig, bind_run, current_run, track_param_reads
from latent.observe import (
    TrackingSettings,
    bind_names,
    flow_run,
    log_dataset,
    log_outputs,
    logger,
    runs_end_after,
    tracking_for,
)
from latent.prefect import (
    _crashed,
    _lineage,
    _links,
    _prefect_compat,
    _registry_file,
    _runtime,
    _selection,
    _shipped,
    _startup,
)
from latent.prefect._flow_spec import FlowSpec
from latent.prefect._flow_spec import make_run as _make_run
from latent.prefect._flow_spec import make_spec as _make_spec
from latent.prefect._runtime import optional_parameter, resolved_signature
from latent.prefect._task_cache import cache_for, cache_session
from latent.prefect.errors import FlowOutputError
from latent.registry import TaskRegistry
from prefect import Flow

P = ParamSpec("P")
R = TypeVar("R")


def flow(
    name: str | Callable[..., Any] | None = None,
    *,
    input: Sequence[str] | None = None,
    output: Sequence[str] | None = None,
    config_schema: type[BaseModel] | None = None,
    **flow_kwargs: Any,
) -> Any:
    """Make a function a Latent flow; `name` must match its directory under `flows/`."""
    if callable(name):
        return flow()(name)

    def decorate(fn: Callable[P, R]) -> LatentFlow[P, R]:
        spec = _make_spec(fn, name or fn.__name__, input, output, config_schema)
        return build_flow(spec, flow_kwargs)

    return decorate


def build_flow(spec: FlowSpec, flow_kwargs: dict[str, Any]) -> LatentFlow[Any, Any]:
    """The Prefect flow of a spec (`@flow`, and `_deferred` once Prefect may be imported)."""
    return LatentFlow(fn=_body(spec), name=spec.name, spec=spec, **flow_kwargs)


def _body(spec: FlowSpec) -> Callable[..., Any]:
    """The function Prefect runs: the user's, inside its project (async for an async fn)."""
    if inspect.iscoroutinefunction(spec.fn):

        @functools.wraps(spec.fn)
        async def body(*args: Any, **kwargs: Any) -> Any:
            with _FlowCall(spec, args, kwargs) as call:
                return call.finish(await spec.fn(*call.bound.args, **call.bound.kwargs))

    else:

        @functools.wraps(spec.fn)
        def body(*args: Any, **kwargs: Any) -> Any:  # type: ignore[misc]
            with _FlowCall(spec, args, kwargs) as call:
                return call.finish(spec.fn(*call.bound.args, **call.bound.kwargs))

    sig = resolved_signature(spec.fn)
    n = len(spec.input)
    params = [
        optional_parameter(p) if i < n and p.default is p.empty else p
        for i, p in enumerate(sig.parameters.values())
    ]
    body.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
    return body


class _FlowCall:
    """One run of a flow's body: its run bound, inputs loaded; `finish` saves and logs."""

    def __init__(self, spec: FlowSpec, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.spec = spec
        self.args = args
        self.kwargs = kwargs
        self._stack = ExitStack()
        self._registry = ExitStack()  # a top-level run's own registry, open until it is saved

    def __enter__(self) -> _FlowCall:
        spec = self.spec
        outer = current_run()
        self.outer = outer
        self.project = project = outer.project if outer else _runtime.project_for(spec.fn)
        self.run = run = _make_run(spec, project, nested=outer is not None)
        self._registry.enter_context(TaskRegistry.run())  # a subflow's is its parent's
        TaskRegistry.start_flow(
            spec.name,
            inputs=list(spec.input),
            outputs=list(spec.output),
            parent=outer.flow if outer else None,
        )
        stack = self._stack
        stack.enter_context(bind_run(run))
        stack.enter_context(bind_names(flow=spec.name, task=None))
        settings = project.settings
        stack.enter_context(
            checkpoints_for(environment=settings.environment, directory=project.cache_dir)
        )
        stack.enter_context(cache_session())
        if outer is None:  # this project's MLflow store, whatever the process's default is
            tracking = TrackingSettings(**_runtime.tracking_settings(project))
            stack.enter_context(tracking_for(tracking))
        self.tracked = stack.enter_context(
            flow_run(
                spec.name,
                run.parameters,
                tags=_run_tags(spec),
                code=spec.fn,
                top_level=outer is None,  # another project's run at once is not its parent
            )
        )
        stack.enter_context(_crashed.owned(project, self.tracked))  # marked failed if killed
        self.reads = stack.enter_context(track_param_reads())
        stack.enter_context(_lineage.tracking())
        stack.callback(_links.publish_run_links, project, spec.name, self.tracked, run.parameters)
        try:
            self.bound = inspect.signature(spec.fn).bind_partial(*self.args, **self.kwargs)
            _load_inputs(spec, run, self.bound)
        except BaseException:
            stack.__exit__(*sys.exc_info())
            self._registry.close()
            raise
        return self

    def finish(self, result: Any) -> Any:
        outputs = _save_outputs(self.spec, self.run, result)
        if len(outputs) > 1:
            log_outputs(outputs)  # tables and metrics named after each output
        else:
            log_outputs(result, name=self.spec.output[0] if self.spec.output else "output")
        _warn_unread(self.spec, self.run, self.reads)
        return result

    def __exit__(self, *exc: Any) -> None:
        with self._registry:
            self._stack.__exit__(*exc)
            if self.outer is None and exc[0] is None:
                _save_registry(self.project, self.spec.name)


def _run_tags(spec: FlowSpec) -> dict[str, str]:
    """MLflow tags: the Prefect flow run (id, name, UI URL) and the flow's source file."""
    tags = _links.prefect_tags()
    source = _runtime.source_file(spec.fn)
    if source:
        tags["mlflow.source.name"] = source
    return tags


_warned_unread: set[tuple[str, tuple[str, ...]]] = set()


def _warn_unread(spec: FlowSpec, run: RunConfig, reads: set[str]) -> None:
    """Once per process: the flow's own keys that nothing read (a schema would catch typos)."""
    if spec.config_schema is not None or not _reads_are_seen():
        return
    own = run.project.own_parameter_keys(
        spec.name if run.project.has_flow(spec.name) else "", _runtime.overrides_for(spec.name)
    )
    read_tops = {key.split(".")[0] for key in reads}
    unread = tuple(key for key in own if key not in read_tops)
    if not unread or (spec.name, unread) in _warned_unread:
        return
    _warned_unread.add((spec.name, unread))
    near = [m for key in unread for m in difflib.get_close_matches(key, read_tops, 1)]
    hints = f" It read {', '.join(map(repr, near))}." if near else ""
    logger.warning(
        f"Flow '{spec.name}' never read parameter(s) {', '.join(map(repr, unread))} set in "
        f"flows/{spec.name}/parameters.yaml or --param.{hints} A typo? Give the flow a "
        "config_schema to have unknown keys rejected before it runs."
    )


def _reads_are_seen() -> bool:
    """Whether every task's reads reach this process: not so in worker processes (Dask, Ray)."""
    from prefect.context import FlowRunContext

    runner = getattr(FlowRunContext.get(), "task_runner", None)
    return runner is None or _shipped.runs_in_this_process(runner)


def _load_inputs(spec: FlowSpec, run: RunConfig, bound: inspect.BoundArguments) -> None:
    names = list(inspect.signature(spec.fn).parameters)
    for param, dataset in zip(names, spec.input, strict=False):
        if bound.arguments.get(param) is None:
            logger.info(f"Loading input '{dataset}'")
            source = run.catalog.get(dataset)
            bound.arguments[param] = value = source.load()
            _log_dataset(dataset, source, value, run.project, "input")
        _lineage.note_dataset(bound.arguments.get(param), dataset)


def _save_outputs(spec: FlowSpec, run: RunConfig, result: Any) -> dict[str, Any]:
    """Save each output dataset; returns them by name (what the MLflow run shows)."""
    outputs = _split_outputs(spec, result)
    for name, value in outputs.items():
        catalog = run.catalog
        dataset = catalog.get(name) if catalog.has(name) else catalog.default_for(name, value)
        dataset.save(value)
        _lineage.record_output(run.flow, name, value)
        logger.info(f"Saved output '{name}'")
        _log_dataset(name, dataset, value, run.project, "output")
    return outputs


def _digest(paths: list[str], project: Project) -> str:
    """Latent's content fingerprint (`latent.cache.fingerprint_paths`, with the stat index the
    cache keys use); files behind URLs: the fingerprint of the cache keys (filesystem checksums)."""
    if all("://" not in p or p.startswith("file://") for p in paths):
        local = [p.removeprefix("file://") for p in paths]
        return fingerprint_paths(local, index_dir=project.cache_dir)
    return cache_for(project).fingerprint(paths)


def _log_dataset(name: str, dataset: Any, value: Any, project: Project, context: str) -> None:
    """A catalog dataset in the MLflow run's datasets, with Latent's content fingerprint."""
    paths = dataset.paths()
    if not paths:
        return
    try:
        digest = _digest(paths, project)
    except (OSError, ValueError) as exc:
        logger.debug(f"No fingerprint for dataset '{name}' ({exc}); not logged to MLflow")
        return
    dtypes: Any = getattr(value, "dtypes", None)
    schema = {str(k): str(v) for k, v in dtypes.items()} if hasattr(dtypes, "items") else None
    rows = len(value) if hasattr(value, "__len__") and not isinstance(value, str | bytes) else None
    log_dataset(name, paths[0], digest, context=context, schema=schema, rows=rows)


def _split_outputs(spec: FlowSpec, result: Any) -> dict[str, Any]:
    if not spec.output:
        return {}
    if result is None:
        logger.warning(
            f"Flow '{spec.name}' returned None: outputs {list(spec.output)} were not saved"
        )
        return {}
    if len(spec.output) == 1:
        return {spec.output[0]: result}
    if isinstance(result, Mapping) and set(spec.output) <= set(result):
        return {name: result[name] for name in spec.output}
    if isinstance(result, (tuple, list)) and len(result) == len(spec.output):
        return dict(zip(spec.output, result, strict=True))
    raise FlowOutputError(
        f"Flow '{spec.name}' declares outputs {list(spec.output)} but returned "
        f"{type(result).__name__}; return a tuple/list of {len(spec.output)} values in that "
        f"order, or a dict with those keys"
    )


def _save_registry(project: Project, flow: str) -> None:
    """Write this run's part of the pipeline into `.latent/registry.json` (`latent registry`)."""
    try:
        _registry_file.save_run(project, flow)
    except (OSError, ValueError) as exc:  # RegistryFileError is a ValueError
        logger.warning(f"Could not save the pipeline registry of {project.root}: {exc}")


class LatentFlow(Flow[P, R], Generic[P, R]):
    """A Prefect `Flow` that runs in its Latent project (see the module docstring)."""

    def __init__(self, *args: Any, spec: FlowSpec | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.spec = spec
        # Tasks go to the project's task runner (`[prefect.task_runner]`) unless the flow chose.
        self._runner_from_project = kwargs.get("task_runner") is None

    def serialize_parameters(self, parameters: dict[str, Any]) -> dict[str, Any]:
        """The flow run's parameters as the server stores them: plain JSON values as they are.

        Prefect encodes each value with FastAPI's `jsonable_encoder`, whose first import costs
        ~0.1 s of the first flow's start; plain values need no encoding. Anything else (a
        DataFrame, a model, a future) is encoded by Prefect as before.
        """
        if all(_plain_json(value) for value in parameters.values()):
            return dict(parameters)
        return super().serialize_parameters(parameters)

    def with_options(self, **kwargs: Any) -> LatentFlow[P, R]:
        new = _prefect_compat.with_options_as(super(), type(self), **kwargs)
        assert isinstance(new, LatentFlow)
        new.spec = self.spec
        new._runner_from_project = self._runner_from_project and "task_runner" not in kwargs
        return new

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        gate = _selection.active()
        if gate is not None and gate.takes_flows:  # a dry run: no Prefect flow run
            return gate.subflow(self, args, kwargs)
        if current_run() is not None:
            return self._start(args, kwargs)
        # a top-level run: its MLflow run ends while Prefect ends the flow run, and the call
        # returns once both have (`runs_end_after`)
        if inspect.iscoroutinefunction(self.fn):
            return _ending_after(self._start(args, kwargs))
        with runs_end_after():
            return self._start(args, kwargs)

    def _start(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        from prefect.settings import temporary_settings

        outer = current_run()
        project = outer.project if outer else _runtime.project_for(self.fn)
        if self._runner_from_project:
            configured = _shipped.configured_runner(project)
            if configured is not None:
                return self.with_options(task_runner=configured)(*args, **kwargs)
        # A top-level run checks its configuration, then picks its Prefect server (_startup).
        updates = {} if outer else _startup.prefect_settings_for_call(self, project)
        # Prefect validates all its settings again for `temporary_settings` (~60 ms a call):
        # only for values not in force already (`latent run` sets them once for all its flows)
        updates = _startup.changed({**updates, **_startup.heartbeat_setting(project)})
        if not updates:
            return super().__call__(*args, **kwargs)
        if inspect.iscoroutinefunction(self.fn):
            return _with_settings(updates, super().__call__(*args, **kwargs))
        with temporary_settings(updates=updates):
            return super().__call__(*args, **kwargs)


def _plain_json(value: Any, depth: int = 0) -> bool:
    """True for None, str, int, float, bool, and lists and str-keyed dicts of them."""
    if value is None or type(value) in (str, int, float, bool):
        return True
    if depth > 20:
        return False
    if type(value) is list:
        return all(_plain_json(item, depth + 1) for item in value)
    if type(value) is dict:
        return all(type(k) is str and _plain_json(v, depth + 1) for k, v in value.items())
    return False


async def _ending_after(run: Any) -> Any:
    """Await an async top-level flow's run, then its MLflow run's end (`runs_end_after`)."""
    with runs_end_after():
        return await run


async def _with_settings(updates: dict[Any, Any], run: Any) -> Any:
    """Await an async flow's run with its Prefect settings in force for the whole run."""
    from prefect.settings import temporary_settings

    with temporary_settings(updates=updates):
        return await run
