"""A tiny Latent project on disk per test: the helpers every suite shares.

Tests read like the docs: write a project (latent.toml, parameters, catalog, flow files), run a
flow, look at what a user sees (values, files, counts of executions, error text). Suites that
need more (processes to kill, servers to stop) subclass `ProjectDir`.
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

# Flow files call count(label) once per execution of a body; each call appends one line.
# os.write on an O_APPEND descriptor: one syscall per line, so a SIGKILL never leaves half a line
# and two processes appending at once never interleave inside a line.
COUNT = """
import os as _os
from pathlib import Path as _Path

def count(label: str, what: str = "calls") -> None:
    path = _Path(__file__).resolve().parents[{depth}] / f"{{what}}.log"
    fd = _os.open(path, _os.O_WRONLY | _os.O_APPEND | _os.O_CREAT, 0o644)
    try:
        _os.write(fd, (label + "\\n").encode())
    finally:
        _os.close(fd)
"""


class ProjectDir:
    """A Latent project under tmp_path that a test writes and runs."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def write(self, relative: str, text: str) -> Path:
        """Write a file; a Python file calling count() gets the count helper prepended."""
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        text = textwrap.dedent(text)
        if relative.endswith(".py") and "count(" in text and "def count(" not in text:
            text = COUNT.format(depth=relative.count("/")) + text
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
        self.write(f"flows/{name}/parameters.yaml", yaml.safe_dump(parameters or {}))
        if catalog is not None:
            self.write(f"flows/{name}/catalog.yaml", yaml.safe_dump(catalog))
        return self.write(f"flows/{name}/flow.py", code)

    def load(self, name: str) -> Any:
        """Import flows/<name>/flow.py fresh and return its flow object (for in-process runs)."""
        from latent.config import Project
        from latent.prefect.cli import load_flow

        return load_flow(Project.discover(), name)

    def calls(self, label: str = "calls") -> list[str]:
        """Lines the flows appended to <label>.log: one per execution of a body."""
        path = self.root / f"{label}.log"
        return path.read_text().splitlines() if path.exists() else []

    def text(self, relative: str) -> str:
        path = self.root / relative
        return path.read_text(errors="replace") if path.exists() else ""

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
            env={**child_env(), "COLUMNS": "200"},
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"latent {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
            )
        return proc


def child_env() -> dict[str, str]:
    """The environment of a process a test starts: this one's, minus per-test overrides."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for var in ("LATENT_ENVIRONMENT", "LATENT_PROJECT_ROOT", "MLFLOW_TRACKING_URI"):
        env.pop(var, None)
    return env
