"""A tiny Latent project on disk, written from the spec's examples, and ways to run it.

Every code example of the docs page (`prefect-flows-and-tasks.md`) is kept in the test modules
as a verbatim string. A test writes it into `flows/<name>/flow.py` of a fresh project, after a
*prelude* (imports and small deterministic stand-ins for the names the example uses but does
not define) and, where the example is not a whole flow, before a *harness* (a flow that runs
it). Stand-ins record each execution as one line in `<project>/calls.log`, so a test can count
how often a body really ran.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import yaml

LATENT_TOML = """\
[mlflow]
enabled = false
"""

# Opens every prelude: `record("label")` writes one line to <project>/calls.log.
RECORD = '''
import threading as _threading
from pathlib import Path as _Path

_RECORD_LOCK = _threading.Lock()


def record(label, what="calls"):
    """One line per execution of a stand-in, in <project>/<what>.log."""
    with _RECORD_LOCK, open(_Path(__file__).resolve().parents[2] / f"{what}.log", "a") as fh:
        fh.write(f"{label}\\n")
'''


class SpecProject:
    """A Latent project under tmp_path; flows are written from spec examples and run."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._modules = 0

    def write(self, relative: str, text: str) -> Path:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def settings(self, toml: str) -> None:
        """Replace config/latent.toml."""
        self.write("config/latent.toml", textwrap.dedent(toml))

    def flow_file(
        self,
        name: str,
        *examples: str,
        prelude: str = "",
        harness: str = "",
        parameters: dict[str, Any] | str | None = None,
        catalog: dict[str, Any] | None = None,
    ) -> Path:
        """Write flows/<name>/flow.py = prelude + examples (verbatim) + harness.

        `parameters` may be YAML text (written as is, e.g. the spec's parameters.yaml).
        """
        flow_dir = self.root / "flows" / name
        flow_dir.mkdir(parents=True, exist_ok=True)
        if isinstance(parameters, str):
            (flow_dir / "parameters.yaml").write_text(parameters)
        else:
            (flow_dir / "parameters.yaml").write_text(yaml.safe_dump(parameters or {}))
        if catalog is not None:
            (flow_dir / "catalog.yaml").write_text(yaml.safe_dump(catalog))
        parts = [
            "# --- prelude (test-only: imports and stand-ins) ---",
            RECORD.strip("\n"),
            textwrap.dedent(prelude).strip("\n"),
            "# --- spec example(s), verbatim ---",
            *(example.strip("\n") + "\n" for example in examples),
        ]
        if harness:
            parts += ["# --- harness (test-only) ---", textwrap.dedent(harness).strip("\n")]
        return self.write(f"flows/{name}/flow.py", "\n\n".join(parts) + "\n")

    def catalog(self, entries: dict[str, Any]) -> None:
        """Write the project-wide config/catalog.yaml."""
        self.write("config/catalog.yaml", yaml.safe_dump(entries))

    def load(self, name: str) -> Any:
        """Import flows/<name>/flow.py fresh and return its @flow(name)."""
        from latent.config import Project
        from latent.prefect.cli import load_flow

        return load_flow(Project.discover(), name)

    def module(self, name: str, module_name: str | None = None) -> Any:
        """Import flows/<name>/flow.py fresh as a plain module (task-only examples)."""
        self._modules += 1
        module_name = module_name or f"spec_example_{name}_{self._modules}_{id(self)}"
        spec = importlib.util.spec_from_file_location(
            module_name, self.root / "flows" / name / "flow.py"
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
        return module

    def calls(self, what: str = "calls") -> list[str]:
        """Lines the stand-ins appended to <what>.log: one per execution."""
        path = self.root / f"{what}.log"
        return path.read_text().splitlines() if path.exists() else []

    def python(self, code: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        """Run `code` in a fresh Python process in this project (a process restart)."""
        proc = subprocess.run(
            [sys.executable, "-c", textwrap.dedent(code)],
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={k: v for k, v in os.environ.items() if k != "LATENT_ENVIRONMENT"},
        )
        if proc.returncode != 0:
            raise AssertionError(f"subprocess failed ({proc.returncode}):\n{proc.stderr}")
        return proc


class LogRecords(logging.Handler):
    """Every record of Prefect's run loggers and Latent's own loggers, at DEBUG and up."""

    NAMES = ("prefect.flow_runs", "prefect.task_runs", "latent")

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def messages(self, level: int | None = None) -> list[str]:
        return [r.getMessage() for r in self.records if level is None or r.levelno == level]
