"""`latent flows`, `latent registry` and `latent new`: what the project holds."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from latent.prefect.cli._app import (
    EXIT_FAILED,
    EXIT_USAGE,
    app,
    console,
    err,
    new_app,
    project_or_exit,
)


@app.command("flows")
def list_flows() -> None:
    """List the project's flows and their parameters (types and defaults from a schema)."""
    from rich.markup import escape

    from latent.config import LatentConfigError

    project = project_or_exit()
    table = Table(title=f"Flows in {project.root}")
    for column in ("flow", "parameter", "type", "default", "value"):
        table.add_column(column)
    for name in project.flow_names():
        try:
            rows = project.describe_parameters(name, _schema_of(project, name))
        except Exception as exc:  # a broken flow file must not hide the other flows
            kind = "" if isinstance(exc, LatentConfigError) else f"{type(exc).__name__}: "
            table.add_row(name, f"[red]{escape(kind + str(exc))}[/red]", "", "", "")
            continue
        for index, row in enumerate(rows or [("-", "", "", "")]):
            # Types and values are text, not Rich markup: `dict[str, float]` must stay whole.
            table.add_row(name if index == 0 else "", *map(escape, row))
        table.add_section()
    console.print(table)


def _schema_of(project: Any, name: str) -> Any:
    """The flow's `config_schema`, importing its flow file only when it declares one.

    Importing a flow imports Prefect (seconds); a flow without a schema has nothing more to
    show than its parameter files, so `latent flows` stays instant for it.
    """
    path = project.flow_dir(name) / "flow.py"
    if not path.is_file() or "config_schema" not in path.read_text(encoding="utf-8"):
        return None
    from latent.prefect.cli._run import load_flow

    spec = load_flow(project, name).spec
    return spec.config_schema if spec is not None else None


@app.command()
def registry(
    format: Annotated[str, typer.Option("--format", "-f", help="ascii, mermaid or dot")] = "ascii",
    emoji: Annotated[bool, typer.Option(help="Use emoji in the ascii tree.")] = True,
) -> None:
    """Draw the pipeline recorded by the last runs (.latent/registry.json)."""
    from latent.prefect._registry_file import registry_file
    from latent.registry import RegistryFileError, TaskRegistry

    project = project_or_exit()
    path = registry_file(project)
    if not path.exists():
        err.print(f"No registry at {path} yet: run a flow first (latent run <flow>).")
        raise typer.Exit(EXIT_FAILED)
    try:
        TaskRegistry.load(path)
    except RegistryFileError as exc:  # it names the file; the next run rebuilds it
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(EXIT_FAILED) from None
    if format == "ascii":
        typer.echo(TaskRegistry.render_ascii(emoji=emoji))
    elif format == "mermaid":
        typer.echo(TaskRegistry.to_mermaid())
    elif format == "dot":
        typer.echo(TaskRegistry.to_dot())
    else:
        err.print(f"Unknown format '{format}': use ascii, mermaid or dot.")
        raise typer.Exit(EXIT_USAGE)


@new_app.command("flow")
def new_flow(name: Annotated[str, typer.Argument(help="Flow name (a Python identifier).")]) -> None:
    """Scaffold flows/<name>/ with flow.py, parameters.yaml and catalog.yaml."""
    from latent.prefect import _scaffold

    project = project_or_exit()
    try:
        created = _scaffold.new_flow(project.root, name)
    except ValueError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(EXIT_USAGE) from None
    for path in created:
        console.print(f"created {path.relative_to(project.root)}")
    console.print(f"Run it with: latent run {name}")
