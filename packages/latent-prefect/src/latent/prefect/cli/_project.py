"""`latent flows`, `latent registry` and `latent new`: what the project holds."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from latent.prefect.cli._app import app, console, err, new_app, project_or_exit


@app.command("flows")
def list_flows() -> None:
    """List the project's flows and their parameters."""
    from latent.config import LatentConfigError

    project = project_or_exit()
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

    project = project_or_exit()
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


@new_app.command("flow")
def new_flow(name: Annotated[str, typer.Argument(help="Flow name (a Python identifier).")]) -> None:
    """Scaffold flows/<name>/ with flow.py, parameters.yaml and catalog.yaml."""
    from latent.prefect import _scaffold

    project = project_or_exit()
    try:
        created = _scaffold.new_flow(project.root, name)
    except ValueError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    for path in created:
        console.print(f"created {path.relative_to(project.root)}")
    console.print(f"Run it with: latent run {name}")
