"""`latent run`: check everything, then run flows in order and print what each task did.

The order is the point: the project, every flow named, its parameters, catalog and typed config,
and the task names of `--only/--from/--to`, are checked before Prefect's server is started or
contacted, so a mistake costs a second and prints one message naming the file (or option) to
fix. Prefect itself is imported only when the flow files are (their `@flow` needs it); a
`--dry-run` never contacts the server (see `_dry_run`).
"""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import inspect
import sys
import time
import traceback as tb
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from latent.prefect._importpath import FLOW_MODULE_PREFIX, add_project_root
from latent.prefect.cli import _interrupt, _output
from latent.prefect.cli._app import (
    ENV_HELP,
    EXIT_FAILED,
    EXIT_USAGE,
    app,
    console,
    err,
    project_or_exit,
    set_environment,
)
from latent.prefect.errors import FlowImportError, PrefectServerError

if TYPE_CHECKING:
    from latent.config import Project
    from latent.prefect._flow import LatentFlow
    from latent.prefect._selection import Selection, SelectionGate


def flow_file(project: Project, name: str) -> Any:
    """`flows/<name>/flow.py`; FlowImportError (with close matches) when there is none."""
    path = project.flow_dir(name) / "flow.py"
    if path.is_file():
        return path
    names = [n for n in project.flow_names() if (project.flow_dir(n) / "flow.py").is_file()]
    from latent.config._suggest import did_you_mean

    known = ", ".join(names) or "none"
    raise FlowImportError(
        f"No flow file {path}. Flows in this project: {known}.{did_you_mean(name, names)} "
        f"Create one with: latent new flow {name}"
    )


def load_flow(project: Project, name: str) -> LatentFlow[Any, Any]:
    """Import `flows/<name>/flow.py` and return its `@flow("<name>")`."""
    found = import_flow(project, name)
    finish_import([name])
    return found


def import_flow(project: Project, name: str) -> Any:
    """Import `flows/<name>/flow.py` without Prefect and return its `@flow("<name>")`.

    Its flows and tasks are placeholders until `finish_import` (see `_deferred`): a flow's spec
    is all `latent run` needs to check its configuration, and Prefect's import costs 1.5 s.
    """
    from latent.prefect._deferred import deferring
    from latent.prefect._flow_spec import FlowSpec

    path = flow_file(project, name)
    add_project_root(project.root)
    module_name = f"{FLOW_MODULE_PREFIX}{name}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    with deferring():
        spec.loader.exec_module(module)
    for value in vars(module).values():
        # vars(): asking a placeholder task for an attribute it lacks would build it
        if isinstance(getattr(value, "__dict__", {}).get("spec"), FlowSpec) and value.name == name:
            return value
    raise FlowImportError(
        f"{path} defines no @flow('{name}'). The flow's name must match its directory name."
    )


def finish_import(names: list[str]) -> None:
    """Build the flows and tasks `import_flow` left as placeholders (this imports Prefect).

    FlowImportError names the file and line of a decorator Prefect rejects.
    """
    from latent.prefect._deferred import materialize
    from latent.prefect._shipped import ship_by_value

    materialize()
    for name in names:  # workers (Dask, Ray) cannot import `latent_flows.<name>`: by value
        ship_by_value(f"{FLOW_MODULE_PREFIX}{name}")


@app.command()
def run(
    flows: Annotated[list[str], typer.Argument(help="Flow names, run in the order given.")],
    param: Annotated[
        list[str] | None,
        typer.Option("--param", "-p", help="Override a parameter: key.sub=value (repeatable)."),
    ] = None,
    env: Annotated[
        str | None,
        typer.Option("--env", "-e", callback=set_environment, help=ENV_HELP),
    ] = None,
    verbose: Annotated[
        bool,
        typer.Option("--verbose", "-v", help="Show Prefect's per-task logs and tracebacks."),
    ] = False,
    traceback: Annotated[
        bool, typer.Option("--traceback", help="Show the full traceback of an error.")
    ] = False,
    only: Annotated[
        list[str] | None,
        typer.Option(
            "--only",
            help="Let only these tasks execute (comma-separated, repeatable; added to a "
            "--from/--to range). Other tasks are answered from the cache; one with nothing "
            "cached stops the run (exit 2). Not --force: a selected task still hits its cache.",
        ),
    ] = None,
    start: Annotated[
        str | None,
        typer.Option(
            "--from",
            help="Let this task and every task after it execute (in the order the last run "
            "called them, else as defined in the flow file); earlier ones come from the cache.",
        ),
    ] = None,
    end: Annotated[
        str | None,
        typer.Option(
            "--to",
            help="Let every task up to and including this one execute; later ones come from "
            "the cache.",
        ),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Show per task whether it would run or hit the cache, and why. Runs no task, "
            "writes nothing, contacts no Prefect server, creates no MLflow run.",
        ),
    ] = False,
) -> None:
    """Run one or more flows and print what each task did."""
    _output.configure(verbose=verbose)
    show_traceback = traceback or verbose
    # `_selection` imports Prefect: only when asked, so that a config error is reported first
    selection = _selection_of(only, start, end) if only or start or end else None
    from latent.prefect._startup import finish_tracking, settings_for_runs

    with _interrupt.handled():
        try:
            project, loaded, scoped = _prepare(
                flows, param or [], show_traceback, warm_up=not dry_run
            )
            gate = _selection_gate(project, loaded, selection, show_traceback)
            _loaded()
            if dry_run:
                for name, flow_obj in loaded:
                    _dry_run_one(project, name, flow_obj, scoped, gate, show_traceback)
                return
            _serve(project, show_traceback)
            with settings_for_runs(project):
                for name, flow_obj in loaded:
                    _run_one(name, flow_obj, scoped, gate, show_traceback)
        finally:
            finish_tracking()  # the flows' MLflow runs, ended in the background (bounded)
    _print_where(project)


def _loaded() -> None:
    """Everything a run needs is imported: freeze it and turn the collector back on.

    `main` turns the collector off while Prefect and the flows load; frozen objects are never
    scanned again, which also makes every later collection during the run cheaper. Only when
    `main` turned it off: a test calling the app in-process keeps its collector as it was.
    """
    if not gc.isenabled():
        gc.freeze()
        gc.enable()


def _prepare(
    names: list[str], overrides: list[str], show_traceback: bool, *, warm_up: bool = True
) -> tuple[Project, list[tuple[str, LatentFlow[Any, Any]]], dict[str, dict[str, Any]]]:
    """Every check a run needs before its server. Exits 2 on a mistake in the command line (an
    unknown flow, a bad --param), 1 on one in the project (configuration, a flow file that fails
    to import)."""
    from latent.config import LatentConfigError

    project = project_or_exit()
    try:
        paths = [flow_file(project, name) for name in names]
    except FlowImportError as exc:
        _fail(exc, show_traceback, code=EXIT_USAGE)
    try:  # what needs no Prefect: parameter files and catalogs of every flow
        for name in names:
            project.parameters(name)
            project.catalog(name)
    except LatentConfigError as exc:
        _fail(exc, show_traceback)
    loaded = []
    for name, path in zip(names, paths, strict=True):
        try:
            loaded.append((name, import_flow(project, name)))
        except (FlowImportError, LatentConfigError) as exc:
            _fail(exc, show_traceback)
        except Exception as exc:
            _fail_import(path, exc, show_traceback)
    from latent.prefect._startup import check_flow

    try:  # overrides and typed config need each flow's `config_schema`, hence its file
        # Each --param goes to the flows that have the key (or the one it names): latent-config.
        schemas = {name: f.spec.config_schema if f.spec else None for name, f in loaded}
        scoped = project.scope_overrides(overrides, schemas)
        with _scoped(scoped):
            for _, flow_obj in loaded:
                check_flow(flow_obj, project)
    except LatentConfigError as exc:
        _fail(exc, show_traceback, code=_config_exit_code(exc))
    if warm_up:  # all checked: MLflow's start-up overlaps Prefect's import (not for --dry-run)
        from latent.prefect._startup import use_running_server, warm_up_tracking

        warm_up_tracking(project)
        use_running_server(project)
    try:  # now Prefect (1.5 s of imports) and the flows and tasks for real
        finish_import(names)
    except (FlowImportError, LatentConfigError) as exc:
        _fail(exc, show_traceback)
    _output.install()  # Prefect, imported just now, has set up its logging
    return project, loaded, scoped


def _selection_of(only: list[str] | None, start: str | None, end: str | None) -> Selection | None:
    from latent.prefect._selection import Selection

    return Selection.of(only, start, end)


def _selection_gate(
    project: Project,
    loaded: list[tuple[str, LatentFlow[Any, Any]]],
    selection: Selection | None,
    show_traceback: bool,
) -> SelectionGate | None:
    """The gate of `--only/--from/--to`, its names checked against the flows' tasks (exit 2
    with the close matches before anything runs)."""
    from latent.prefect._selection import SelectionGate, task_order
    from latent.prefect.errors import TaskSelectionError

    if selection is None:
        return None
    try:
        selected = selection.tasks(task_order(project, loaded))
    except TaskSelectionError as exc:
        _fail(exc, show_traceback, code=EXIT_USAGE)
    return SelectionGate(selection, selected)


def _serve(project: Project, show_traceback: bool) -> None:
    """The Prefect server the run talks to: started if needed, and answering (else exit 1)."""
    from latent.prefect._startup import check_reachable, choose_server

    try:
        choose_server(project)
        check_reachable()
    except PrefectServerError as exc:
        _fail(exc, show_traceback)


@contextmanager
def _scoped(overrides: dict[str, dict[str, Any]]) -> Iterator[None]:
    """Hand every flow of the command its overrides (cross-flow `params.get` sees them too)."""
    from latent.prefect._runtime import param_overrides

    with ExitStack() as stack:
        for name, values in overrides.items():
            stack.enter_context(param_overrides(name, values))
        yield


def _run_one(
    name: str,
    flow_obj: LatentFlow[Any, Any],
    scoped: dict[str, dict[str, Any]],
    gate: SelectionGate | None,
    show_traceback: bool,
) -> None:
    from latent.prefect._progress import progress_enabled
    from latent.prefect._selection import gated
    from latent.prefect._startup import ui_url_of_flow_run
    from latent.prefect._summary import collect_summary
    from latent.prefect.errors import TaskNotSelectedError

    console.rule(f"[bold]latent run {name}")
    started = time.perf_counter()
    with collect_summary() as summary, _scoped(scoped), progress_enabled(), gated(gate):
        # the hook notes the flow run, so that an interrupt can mark it Crashed
        hooks = [*flow_obj.on_running_hooks, _interrupt.remember_flow_run]
        state = None
        try:
            # an error before Prefect has a flow run (e.g. a read-only .latent/) raises here
            state = flow_obj.with_options(on_running=hooks)(return_state=True)
            if inspect.isawaitable(state):  # an `async def` flow
                state = asyncio.run(_awaited(state))
            elapsed = time.perf_counter() - started
            state.result()
        except Exception as exc:
            elapsed = time.perf_counter() - started
            _print_summary(name, summary, elapsed, failed=True)
            if state is not None:
                _print_flow_run(ui_url_of_flow_run(state.state_details.flow_run_id))
            if show_traceback:
                err.print(_traceback_text(exc), highlight=False, markup=False)
            if isinstance(exc, TaskNotSelectedError):  # the command line's to change: one line
                err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
                raise typer.Exit(EXIT_USAGE) from None
            err.print(
                f"[red]Flow '{name}' failed:[/red] {type(exc).__name__}: {escape(str(exc))}",
                highlight=False,
                soft_wrap=True,  # an error is read and copied whole: never cut into lines
            )
            raise typer.Exit(EXIT_FAILED) from None
    _print_summary(name, summary, elapsed, failed=False)
    _print_flow_run(ui_url_of_flow_run(state.state_details.flow_run_id))


def _config_exit_code(exc: BaseException) -> int:
    """2 for a malformed `--param` or one no flow accepts (the command line), 1 for the rest."""
    from latent.config import ParameterOverrideError

    return EXIT_USAGE if isinstance(exc, ParameterOverrideError) else EXIT_FAILED


def _dry_run_one(
    project: Project,
    name: str,
    flow_obj: LatentFlow[Any, Any],
    scoped: dict[str, dict[str, Any]],
    gate: SelectionGate | None,
    show_traceback: bool,
) -> None:
    """`--dry-run`: the flow body answered by `DryRun` (no Prefect, no MLflow), then its table."""
    from latent.prefect._dry_run import DryRun
    from latent.prefect._selection import task_order

    console.rule(f"[bold]latent run {name} --dry-run")
    dry = DryRun(gate)
    try:
        with _scoped(scoped):
            lines = dry.run_flow(flow_obj, task_order(project, [(name, flow_obj)]))
    except Exception as exc:
        if show_traceback:
            err.print(_traceback_text(exc), highlight=False, markup=False)
        err.print(
            f"[red]Flow '{name}' failed in the dry run:[/red] {type(exc).__name__}: "
            f"{escape(str(exc))}",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(EXIT_FAILED) from None
    _print_dry_run(name, lines, dry)


def _print_dry_run(name: str, lines: list[Any], dry: Any) -> None:
    table = Table(title=f"{name}: dry run (nothing ran, nothing was written)")
    for column in ("flow", "task", "outcome", "calls / rows", "why"):
        table.add_column(column)
    styles = {"cached": "cyan", "would run": "yellow", "not selected": "red"}
    for line in lines:
        style = styles.get(line.outcome, "dim")
        table.add_row(
            line.flow,
            line.task,
            f"[{style}]{line.outcome}[/{style}]",
            line.counts,
            escape("; ".join(line.reasons) or "-"),
        )
    console.print(table)
    if dry.stopped_after is not None:
        what = f" ({dry.stopped_by})" if dry.stopped_by else ""
        console.print(
            f"The flow body used the result of '{dry.stopped_after}', which would run, as "
            f"data{escape(what)}: the tasks after it cannot be known without running it.",
            highlight=False,
            soft_wrap=True,
        )


def _fail(exc: BaseException, show_traceback: bool, code: int = EXIT_FAILED) -> Any:
    """Print a user mistake once (the traceback only when asked) and exit."""
    if show_traceback:
        err.print(_traceback_text(exc), highlight=False, markup=False)
    err.print(f"[red]error:[/red] {escape(str(exc))}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _fail_import(path: Any, exc: BaseException, show_traceback: bool) -> Any:
    """A flow file that raises on import: where, and the error (the user's own code)."""
    if show_traceback:
        err.print(_traceback_text(exc), highlight=False, markup=False)
    else:
        # the innermost frames in the user's files say where the mistake is
        frames = [f for f in tb.extract_tb(exc.__traceback__) if "site-packages" not in f.filename]
        for frame in frames[-3:]:
            err.print(
                f"  {frame.filename}:{frame.lineno} {frame.line}", highlight=False, markup=False
            )
    err.print(
        f"[red]error:[/red] importing {path} failed: {type(exc).__name__}: {escape(str(exc))}"
        + ("" if show_traceback else " (--traceback shows where)"),
        highlight=False,
        soft_wrap=True,
    )
    raise typer.Exit(EXIT_FAILED)


def _print_summary(name: str, summary: Any, elapsed: float, *, failed: bool) -> None:
    rows = summary.grouped()
    title = f"{name}: {'FAILED' if failed else 'completed'} in {elapsed:.2f} s"
    if not rows:  # an empty table says nothing: say why there are no rows
        console.print(f"{title} (no task finished)", highlight=False)
        return
    table = Table(title=title)
    for column in ("flow", "task", "status", "calls", "p50 (s)", "p95 (s)", "duration (s)"):
        table.add_column(column)
    for row in rows:
        style = {"Cached": "cyan", "Failed": "red"}.get(row.status, "green")
        p50, p95 = row.percentile(50), row.percentile(95)
        table.add_row(
            row.flow or "-",
            row.task,
            f"[{style}]{row.status}[/{style}]",
            str(row.count),
            f"{p50:.3f}" if p50 is not None else "-",
            f"{p95:.3f}" if p95 is not None else "-",
            f"{row.duration_s:.3f}",
        )
    console.print(table)


def _print_flow_run(url: str | None) -> None:
    if url is not None:
        console.print(f"Prefect UI: {url}", soft_wrap=True, highlight=False)


def _print_where(project: Project) -> None:
    """Where to look after a run: data, each flow run's MLflow run, how to open the MLflow UI.

    (Each flow run's Prefect UI page is printed under its summary.)
    """
    from latent.prefect import _links

    lines = [f"Data:       {project.data_dir}"]
    for run in _links.recent_runs():
        if run.get("mlflow_run_url"):
            lines.append(f"MLflow run: {run['mlflow_run_url']}   ({run['flow']})")
    if project.settings.mlflow.enabled:
        lines.append(f"MLflow UI:  latent ui   (store: {project.tracking_uri})")
    for line in lines:
        console.print(escape(line), soft_wrap=True, highlight=False)


def _traceback_text(exc: BaseException) -> str:
    """The traceback `-v` shows, with credentials redacted like every other output."""
    from latent.observe import redact_text

    return redact_text("".join(tb.format_exception(exc)))


async def _awaited(awaitable: Any) -> Any:
    return await awaitable
