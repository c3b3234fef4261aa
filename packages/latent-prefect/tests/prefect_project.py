"""A tiny Latent project on disk per test, and ways to run its flows.

Tests read like the docs: write a project (latent.toml, parameters, catalog, flow files), run a
flow, look at what a user sees (values, files, counts of executions, error text).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import yaml

LATENT_TOML = """\
environment = "dev"

[mlflow]
enabled = false
"""


class ProjectDir:
    """A Latent project under tmp_path that a test writes and runs."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def write(self, relative: str, text: str) -> Path:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        text = textwrap.dedent(text)
        if relative.endswith(".py") and "count(" in text and "def count(" not in text:
            text = COUNT.replace("parents[2]", f"parents[{relative.count('/')}]") + text
        path.write_text(text)
        return path

    def flow(
        self,
        name: str,
        code: str,
        *,
        parameters: dict[str, Any] | None = None,
        catalog: dict[str, Any] | None = None,
    ) -> Path:
        """Write flows/<name>/flow.py (+ parameters.yaml, catalog.yaml)."""
        (self.root / "flows" / name).mkdir(parents=True, exist_ok=True)
        self.write(f"flows/{name}/parameters.yaml", yaml.safe_dump(parameters or {}))
        if catalog is not None:
            self.write(f"flows/{name}/catalog.yaml", yaml.safe_dump(catalog))
        return self.write(f"flows/{name}/flow.py", code)

    def load(self, name: str) -> Any:
        """Import flows/<name>/flow.py fresh and return its flow object."""
        from latent.config import Project
        from latent.prefect.cli import load_flow

        return load_flow(Project.discover(), name)

    def calls(self, label: str = "calls") -> list[str]:
        """Lines the flows appended to <label>.log: one per execution of a body."""
        path = self.root / f"{label}.log"
        return path.read_text().splitlines() if path.exists() else []

    def latent(
        self, *args: str, check: bool = True, timeout: float = 240
    ) -> subprocess.CompletedProcess[str]:
        """Run the `latent` command in a fresh process, in this project."""
        exe = Path(sys.executable).parent / "latent"
        proc = subprocess.run(
            [str(exe), *args],
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "COLUMNS": "200"},
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"latent {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
            )
        return proc


# The snippet flow files use to count executions of a body.
COUNT = """
from pathlib import Path

def count(label: str, what: str = "calls") -> None:
    with open(Path(__file__).resolve().parents[2] / f"{what}.log", "a") as fh:
        fh.write(label + "\\n")
"""
