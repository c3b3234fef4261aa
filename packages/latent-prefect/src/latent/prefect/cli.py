"""The `latent` command: run flows, list them, draw the pipeline, manage caches."""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from latent.config import LatentConfigError, Project
from latent.prefect._flow import LatentFlow
from latent.prefect._shipped import FLOW_MODULE_PREFIX, ship_by_value
from latent.prefect.errors import FlowImportError

app = typer.Typer(
    help="Latent: evaluation workflows on Prefect 3.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
cache_app = typer.Typer(help="Inspect and clear task caches.", no_args_is_help=True)
checkpoints_app = typer.Typer(help="Manage @checkpoint results.", no_args_is_help=True)
new_app = typer.Typer(help="Scaffold new things in the project.", no_args_is_help=True)
app.add_typer(cache_app, name="cache")
app.add_typer(checkpoints_app, name="checkpoints")
app.add_typer(new_app, name="new")

console = Console()
err = Console(stderr=True)


def _project() -> Project:
    try:
        return Project.discover()
    except LatentConfigError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None


def load_flow(project: Project, name: str) -> LatentFlow[Any, Any]:
    """Import `flows/<name>/flow.py` and return its `@flow("<name>")`."""
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
) -> None:
    """Run one or more flows and print what each task did."""
    from latent.prefect._progress import progress_enabled
    from latent.prefect._runtime import collect_summary, param_overrides

    project = _project()
    for name in flows:
        try:
            flow_obj = load_flow(project, name)
        except (FlowImportError, LatentConfigError) as exc:
            err.print(f"[red]error:[/red] {exc}")
            raise typer.Exit(2) from None
        console.rule(f"[bold]latent run {name}")
        started = time.perf_counter()
        with collect_summary() as summary, param_overrides(name, param or []), progress_enabled():
            try:
                flow_obj()
            except Exception as exc:
                _print_summary(name, summary, time.perf_counter() - started, failed=True)
                err.print(f"[red]Flow '{name}' failed:[/red] {type(exc).__name__}: {exc}")
                raise typer.Exit(1) from None
        _print_summary(name, summary, time.perf_counter() - started, failed=False)
    _print_where(project)


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


@app.command("flows")
def list_flows() -> None:
    """List the project's flows and their parameters."""
    project = _project()
    table = Table(title=f"Flows in {project.root}")
    table.add_column("flow")
    table.add_column("parameters")
    for name in project.flow_names():
        try:
            values = project.parameters(name)
            shown = ", ".join(f"{k}={v!r}" for k, v in values.items()) or "-"
        except LatentConfigError as exc:
            shown = f"[red]{exc}[/red]"
        table.add_row(name, shown)
    console.print(table)


@app.command()
def registry(
    format: Annotated[str, typer.Option("--format", "-f", help="ascii, mermaid or dot")] = "ascii",
    emoji: Annotated[bool, typer.Option(help="Use emoji in the ascii tree.")] = True,
) -> None:
    """Draw the pipeline recorded by the last runs (.latent/registry.json)."""
    from latent.registry import TaskRegistry

    project = _project()
    path = project.latent_dir / "registry.json"
    if not path.exists():
        err.print(f"No registry at {path} yet: run a flow first (latent run <flow>).")
        raise typer.Exit(1)
    TaskRegistry.load(path)
    if format == "ascii":
        typer.echo(TaskRegistry.render_ascii(emoji=emoji))
    elif format == "mermaid":
        typer.echo(TaskRegistry.to_mermaid())
    elif format == "dot":
        typer.echo(TaskRegistry.to_dot())
    else:
        err.print(f"Unknown format '{format}': use ascii, mermaid or dot.")
        raise typer.Exit(2)


@cache_app.command("list")
def cache_list(
    flow: Annotated[str | None, typer.Option(help="Only this flow's tasks.")] = None,
    task: Annotated[str | None, typer.Option(help="Only this task.")] = None,
) -> None:
    """List cached task results and checkpoint entries."""
    from latent.prefect import _cache_admin

    project = _project()
    table = Table(title=f"Task cache in {project.results_storage}")
    for column in ("flow", "task", "entries", "size"):
        table.add_column(column)
    for row in _cache_admin.task_entries(project, flow=flow, task=task):
        table.add_row(row.flow or "-", row.task, str(row.count), _size(row.size))
    console.print(table)
    table = Table(title=f"Checkpoints in {project.cache_dir}")
    for column in ("function", "entries", "size"):
        table.add_column(column)
    for function, count, size in _cache_admin.checkpoint_entries(project):
        table.add_row(function, str(count), _size(size))
    console.print(table)


@cache_app.command("clear")
def cache_clear(
    flow: Annotated[str | None, typer.Option(help="Only this flow's tasks.")] = None,
    task: Annotated[str | None, typer.Option(help="Only this task.")] = None,
) -> None:
    """Delete cached task results (all, or one flow's, or one task's)."""
    from latent.prefect import _cache_admin

    removed = _cache_admin.clear_tasks(_project(), flow=flow, task=task)
    console.print(f"Removed {removed} cached task result(s).")


@cache_app.command("prune")
def cache_prune() -> None:
    """Delete expired task results and checkpoint entries."""
    from latent.prefect import _cache_admin

    tasks, checkpoints = _cache_admin.prune(_project())
    console.print(f"Pruned {tasks} expired task result(s) and {checkpoints} checkpoint(s).")


@checkpoints_app.command("clear")
def checkpoints_clear(
    function: Annotated[str | None, typer.Option(help="Only this function's entries.")] = None,
) -> None:
    """Delete @checkpoint results."""
    from latent.cache import clear_checkpoints

    project = _project()
    removed = clear_checkpoints(project.cache_dir, function=function)
    console.print(f"Removed {removed} checkpoint entr{'y' if removed == 1 else 'ies'}.")


@new_app.command("flow")
def new_flow(name: Annotated[str, typer.Argument(help="Flow name (a Python identifier).")]) -> None:
    """Scaffold flows/<name>/ with flow.py, parameters.yaml and catalog.yaml."""
    from latent.prefect import _scaffold

    project = _project()
    try:
        created = _scaffold.new_flow(project.root, name)
    except ValueError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    for path in created:
        console.print(f"created {path.relative_to(project.root)}")
    console.print(f"Run it with: latent run {name}")


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n:.1f} TiB"


def main() -> None:
    """Entry point of the `latent` console script."""
    # Prefect's embedded server would try to phone home and log an error on a closed network.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    app()


if __name__ == "__main__":
    main()
