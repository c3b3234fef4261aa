"""The `latent` command's application object, its conventions, and the project it works in.

Kept light on purpose: this module and the command modules import no Prefect, MLflow or pandas at
the top, so `latent --help`, `latent --version` and `latent flows` answer at once; a command that
needs Prefect imports it in its body.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

if TYPE_CHECKING:
    from latent.config import Project

#: Exit codes of every `latent` command (shown by `latent --help` and in the docs). The rule: 2
#: means "fix what you typed", 1 means "fix the project or its code" (or a run failed).
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

EXIT_CODES = (
    "Exit codes:\n"
    f"{EXIT_OK} success (also `latent` alone, --help and --version).\n"
    f"{EXIT_FAILED} the command ran and failed: a flow failed; the project's configuration is "
    "invalid (latent.toml, parameters, typed config, catalog: the message names the file); a flow "
    "file failed to import; the Prefect server could not be started or reached; a confirmation "
    "was declined; there is nothing to show yet.\n"
    f"{EXIT_USAGE} the command line is wrong: a bad option or argument, a malformed --param or "
    "one no flow accepts, an unknown flow or task name, a task outside --only/--from/--to with "
    "no cached result, no project found here, or a destructive command without --yes when "
    "standard input is not a terminal.\n"
    "130 / 143 `latent run` was interrupted by Ctrl-C / SIGTERM (finished tasks stay cached)."
)

app = typer.Typer(
    help="Latent: evaluation workflows on Prefect 3.",
    epilog=EXIT_CODES,
    add_completion=True,
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

_ENVIRONMENTS = ("dev", "development", "production")  # as config/latent.toml accepts
_SIBLINGS = ("latent-config", "latent-cache", "latent-observe", "prefect")


def _version_line() -> str:
    """`latent-prefect X (latent-config Y, ..., prefect Z)`, read from metadata, not imports."""
    from latent.prefect import __version__

    parts = []
    for dist in _SIBLINGS:
        try:
            parts.append(f"{dist} {version(dist)}")
        except PackageNotFoundError:
            parts.append(f"{dist} not installed")
    return f"latent-prefect {__version__} ({', '.join(parts)})"


def _show_version(value: bool) -> None:
    if value:
        typer.echo(_version_line())
        raise typer.Exit(EXIT_OK)


@app.callback(invoke_without_command=True)
def _main(
    ctx: typer.Context,
    show_version: Annotated[
        bool,
        typer.Option(
            "--version",
            "-V",
            callback=_show_version,
            is_eager=True,
            help="Show the versions of latent-prefect, its sibling packages and Prefect.",
        ),
    ] = False,
) -> None:
    """Latent: evaluation workflows on Prefect 3."""
    # `latent` alone shows the help and succeeds, as Kedro and Git do.
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())
        raise typer.Exit(EXIT_OK)


def project_or_exit() -> Project:
    """The project the command runs in; exit 2 outside one (saying where we looked and how to
    fix it), 1 when its latent.toml is invalid."""
    from latent.config import LatentConfigError, Project, find_project_root

    cwd = Path.cwd()
    if not os.environ.get("LATENT_PROJECT_ROOT") and find_project_root(cwd) is None:
        searched = [cwd, *cwd.parents]
        shown = ", ".join(str(p) for p in searched[:4]) + (", ..." if len(searched) > 4 else "")
        err.print(
            f"[red]error:[/red] no Latent project here: looked for config/latent.toml in {cwd} "
            f"and every parent ({shown}). Run the command inside a project, create one with "
            "`latent init`, or set LATENT_PROJECT_ROOT.",
            highlight=False,
        )
        raise typer.Exit(EXIT_USAGE)
    try:
        return Project.discover()
    except LatentConfigError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        raise typer.Exit(EXIT_FAILED) from None


def confirm_or_exit(question: str, *, yes: bool) -> None:
    """Ask before deleting; without a terminal to ask on, refuse unless `--yes` was given."""
    if yes:
        return
    if not sys.stdin.isatty():
        err.print(
            f"[red]error:[/red] {question} Standard input is not a terminal, so I cannot ask: "
            "pass --yes to confirm.",
            highlight=False,
        )
        raise typer.Exit(EXIT_USAGE)
    if not typer.confirm(question, default=False):
        err.print("Nothing was deleted.")
        raise typer.Exit(EXIT_FAILED)


def set_environment(ctx: typer.Context, value: str | None) -> str | None:
    """Option callback of `--env`: LATENT_ENVIRONMENT for this command, restored after it.

    An environment variable, not an argument threaded through: worker processes (process pool,
    Dask, Ray) inherit it, and project discovery already keys its cache on it.
    """
    if value is None:
        return None
    if value.strip().lower() not in _ENVIRONMENTS:
        raise typer.BadParameter(f"{value!r} is not an environment: use dev or production.")
    before = os.environ.get("LATENT_ENVIRONMENT")
    os.environ["LATENT_ENVIRONMENT"] = value
    ctx.call_on_close(_restore("LATENT_ENVIRONMENT", before))
    return value


def _restore(name: str, value: str | None) -> Callable[[], Any]:
    def restore() -> None:
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value

    return restore


YesOption = Annotated[
    bool, typer.Option("--yes", "-y", help="Delete without asking (needed without a terminal).")
]
ENV_HELP = "dev or production: LATENT_ENVIRONMENT for this run (latent.toml's otherwise)."
