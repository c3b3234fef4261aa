"""The `latent` command: run flows, list them, draw the pipeline, manage caches.

One module per group of commands; `_app` holds the Typer application they register on.
"""

from __future__ import annotations

import gc
import os
import sys

from latent.prefect.cli import _cache, _init, _project, _run, _server, _ui  # noqa: F401
from latent.prefect.cli._app import app
from latent.prefect.cli._run import load_flow

__all__ = ["app", "load_flow", "main"]


def main() -> None:
    """Entry point of the `latent` console script."""
    # Prefect's embedded server would try to phone home and log an error on a closed network.
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # `latent` alone prints the help as `--help` does, at its speed: going through the app's
    # callback instead would load Typer's Pydantic-based argument adapters first.
    # Loading Prefect, Pydantic and a project's libraries builds about a million long-lived
    # objects, and the collector scans them over and over while they load (~15 % of the import
    # time) and once more while the process exits. It stays off while a command loads: `run`
    # freezes what loaded (never scanned again) and turns it back on before a flow runs
    # (`_run._loaded`); freezing again on the way out skips the last full scan.
    gc.disable()
    try:
        app(args=sys.argv[1:] or ["--help"])
    finally:
        gc.freeze()
