"""The `latent` command's application object, consoles and the project it works in."""

from __future__ import annotations

import typer
from rich.console import Console

from latent.config import LatentConfigError, Project

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


def project_or_exit() -> Project:
    try:
        return Project.discover()
    except LatentConfigError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
