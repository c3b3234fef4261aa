"""`latent run`: load flow files, run them in order, print what each task did."""

from __future__ import annotations

import importlib.util
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from latent.prefect.cli._app import ENV_HELP, app, console, err, project_or_exit, set_environment
from latent.prefect.errors import FlowImportError

if TYPE_CHECKING:
    from latent.config import Project
    from latent.prefect._flow import LatentFlow


def load_flow(project: Project, name: str) -> LatentFlow[Any, Any]:
    """Import `flows/<name>/flow.py` and return its `@flow("<name>")`."""
    # Prefect loads here, not when the command line starts: `latent --help` stays instant.
    from latent.prefect._flow import LatentFlow
    from latent.prefect._shipped import FLOW_MODULE_PREFIX, ship_by_value

    path = project.flow_dir(name) / "flow.py"
    if not path.is_file():
        known = ", ".join(project.flow_names()) or "none"
        raise FlowImportError(
            f"No flow file {path}. Flows in this project: {known}. "
            f"Create one with: latent new flow {name}"
        )
    module_name = f"{FLOW_MODULE_PREFIX}{name}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    # Worker processes (Dask, Ray) cannot import `latent_flows.<name>`: ship it by value.
    ship_by_value(module_name)
    for value in vars(module).values():
        if isinstance(value, LatentFlow) and value.name == name:
            return value
    raise FlowImportError(
        f"{path} defines no @flow('{name}'). The flow's name must match its directory name."
    )


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
) -> None:
    """Run one or more flows and print what each task did."""
    from latent.config import LatentConfigError
    from latent.prefect._progress import progress_enabled
    from latent.prefect._summary import collect_summary

    project = project_or_exit()
    try:
        loaded = {name: load_flow(project, name) for name in flows}
        # Each --param goes to the flows that have the key (or the one it names): see latent-config.
        scoped = project.scope_overrides(
            param, {name: f.spec.config_schema if f.spec else None for name, f in loaded.items()}
        )
        for name, schema in ((n, f.spec.config_schema) for n, f in loaded.items() if f.spec):
            if schema is not None:  # every flow's parameters are checked before any flow runs
                project.typed_parameters(name, schema, scoped[name])
    except (FlowImportError, LatentConfigError) as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    for name in flows:
        flow_obj = loaded[name]
        console.rule(f"[bold]latent run {name}")
        started = time.perf_counter()
        with collect_summary() as summary, _scoped(scoped), progress_enabled():
            try:
                flow_obj()
            except Exception as exc:
                _print_summary(name, summary, time.perf_counter() - started, failed=True)
                err.print(f"[red]Flow '{name}' failed:[/red] {type(exc).__name__}: {exc}")
                raise typer.Exit(1) from None
        _print_summary(name, summary, time.perf_counter() - started, failed=False)
    _print_where(project)


@contextmanager
def _scoped(overrides: dict[str, dict[str, Any]]) -> Iterator[None]:
    """Hand every flow of the command its overrides (cross-flow `params.get` sees them too)."""
    from latent.prefect._runtime import param_overrides

    with ExitStack() as stack:
        for name, values in overrides.items():
            stack.enter_context(param_overrides(name, values))
        yield


def _print_summary(name: str, summary: Any, elapsed: float, *, failed: bool) -> None:
    table = Table(title=f"{name}: {'FAILED' if failed else 'completed'} in {elapsed:.2f} s")
    for column in ("flow", "task", "status", "calls", "duration (s)"):
        table.add_column(column)
    for row in summary.grouped():
        style = {"Cached": "cyan", "Failed": "red"}.get(row.status, "green")
        table.add_row(
            row.flow or "-",
            row.task,
            f"[{style}]{row.status}[/{style}]",
            str(row.count),
            f"{row.duration_s:.3f}",
        )
    console.print(table)


def _print_where(project: Project) -> None:
    lines = [f"Data:       {project.data_dir}"]
    if project.settings.mlflow.enabled:
        lines.append(
            f"MLflow UI:  mlflow ui --backend-store-uri {project.tracking_uri}"
            "   (then http://127.0.0.1:5000; needs latent-observe[server])"
        )
    lines.append("Prefect UI: prefect server start   (then http://127.0.0.1:4200)")
    for line in lines:
        console.print(line, soft_wrap=True, highlight=False)
