"""`latent server start|stop|status`: the managed local Prefect server every run shares."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

import typer
from rich.markup import escape

from latent.prefect.cli._app import app, console, err

if TYPE_CHECKING:
    from latent.prefect._server import ServerInfo

server_app = typer.Typer(
    help="The local Prefect server runs share (started by the first run).",
    no_args_is_help=True,
)
app.add_typer(server_app, name="server")


@server_app.command("start")
def start() -> None:
    """Start the managed server (if it is not running) and print its UI address."""
    from latent.prefect._server import ManagedServer
    from latent.prefect.errors import PrefectServerError

    try:
        info = ManagedServer().ensure(
            announce=lambda message: err.print(message, soft_wrap=True, markup=False)
        )
    except PrefectServerError as exc:
        err.print(f"[red]error:[/red] {escape(str(exc))}", soft_wrap=True, highlight=False)
        raise typer.Exit(1) from None
    _describe(info)


@server_app.command("stop")
def stop() -> None:
    """Stop the managed server and MLflow's shared writer; the next run starts them again."""
    from latent.observe import stop_shared_writers
    from latent.prefect._server import ManagedServer, writer_dir

    info = ManagedServer().stop()
    for pid in stop_shared_writers(writer_dir()):
        console.print(f"Stopped MLflow's shared writer (pid {pid}).", highlight=False)
    if info is None:
        console.print("No managed Prefect server was running.")
        return
    console.print(f"Stopped the Prefect server at {info.ui_url} (pid {info.pid}).")


@server_app.command("status")
def status() -> None:
    """Say whether the managed server runs, where its UI is, and which server runs use."""
    from latent.prefect._server import ManagedServer, configured_api_url

    server = ManagedServer()
    info = server.running()
    configured = configured_api_url()
    if configured:
        console.print(f"Runs use PREFECT_API_URL={configured} (the managed server is not used).")
    if info is None:
        console.print(f"No managed Prefect server is running (state in {server.directory}).")
        console.print("The next `latent run` starts one, or: latent server start")
        raise typer.Exit(1)
    _describe(info)
    _describe_writers()


def _describe_writers() -> None:
    from latent.observe import shared_writers
    from latent.prefect._server import writer_dir

    for pid in shared_writers(writer_dir()):
        console.print(
            f"MLflow writer: {pid} (shared by runs; exits on its own when idle)", highlight=False
        )


def _describe(info: ServerInfo) -> None:
    started = dt.datetime.fromtimestamp(info.started_at).strftime("%Y-%m-%d %H:%M:%S")
    console.print(f"Prefect UI:  {info.ui_url}", soft_wrap=True, highlight=False)
    console.print(f"API:         {info.api_url}", soft_wrap=True, highlight=False)
    console.print(f"Process:     {info.pid} (since {started})", highlight=False)
    console.print(
        f"Home:        {info.home}  (log: {info.log_file})", soft_wrap=True, highlight=False
    )
    console.print("Stop it with: latent server stop", highlight=False)
