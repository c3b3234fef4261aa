"""The project root on `sys.path`, so flows import the project's own modules.

`from flows.common import split_xy` or `from utils import helper` works under `latent run`, in
a flow file run as a script (`python flows/x/flow.py`), in a notebook under the project, and in
worker processes (Prefect's process pool, Dask, Ray): the root is put on `sys.path` and on
``PYTHONPATH``, which processes started from this one inherit.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

#: Modules `latent run` loads from flow files; no worker can import them by this name.
FLOW_MODULE_PREFIX = "latent_flows."


def add_project_root(root: str | Path) -> None:
    """Make the modules under `root` importable here and in the processes this one starts."""
    path = str(Path(root).resolve())
    if path not in sys.path:
        sys.path.insert(0, path)
    entries = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if path not in entries:
        os.environ["PYTHONPATH"] = os.pathsep.join([path, *entries])


def add_project_of_main() -> None:
    """Add the project of the running Python script (for a notebook or a shell: of the cwd).

    Console scripts (`latent`, `pytest`) are skipped: `latent run` adds the project it runs.
    """
    main_file = getattr(sys.modules.get("__main__"), "__file__", None)
    if main_file and not main_file.endswith(".py"):
        return
    from latent.config import find_project_root

    try:
        root = find_project_root(Path(main_file) if main_file else Path.cwd())
    except OSError:
        return
    if root is not None:
        add_project_root(root)
