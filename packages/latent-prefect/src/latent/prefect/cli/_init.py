"""`latent init [dir]`: a new project, ready for `latent run`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from latent.prefect.cli._app import EXIT_USAGE, app, console, err


@app.command("init")
def init(
    directory: Annotated[
        Path, typer.Argument(help="Where to create the project (made if missing).")
    ] = Path("."),
    flow: Annotated[str, typer.Option(help="Name of the first flow.")] = "hello",
) -> None:
    """Create a project: config/latent.toml, global.yaml, catalog.yaml, a first flow, .gitignore."""
    from latent.prefect import _scaffold

    root = directory.expanduser().resolve()
    try:
        created = _scaffold.new_project(root, flow)
    except ValueError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(EXIT_USAGE) from None
    for path in created:
        console.print(f"created {path.relative_to(root)}", highlight=False)
    where = "" if root == Path.cwd() else f"cd {directory} && "
    console.print(f"Next: {where}latent run {flow}", highlight=False)
