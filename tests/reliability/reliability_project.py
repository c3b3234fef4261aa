"""A tiny Latent project on disk per test, and ways to run, kill and inspect its processes.

The faults here are real: flows run as separate Python processes that the test SIGKILLs, files
are truncated on disk, an `mlflow server` is started and killed. Helpers only build projects and
read what a user would see (outputs, counts of executions, warning and error text).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
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
    """A Latent project under tmp_path that a test writes, runs and breaks."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def write(self, relative: str, text: str) -> Path:
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

    # -- processes ------------------------------------------------------------------------

    def script(self, name: str, flow: str, extra: str = "") -> Path:
        """A plain script that imports flows/<flow>/flow.py and calls the flow, as a user would."""
        return self.write(
            name,
            f"""
            import sys
            from latent.config import Project
            from latent.prefect.cli import load_flow

            {extra}
            result = load_flow(Project.discover(), {flow!r})()
            print("RESULT-LEN", len(result) if hasattr(result, "__len__") else result)
            """,
        )

    def popen(
        self, *argv: str, log: str = "proc", env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Start `python <argv>` in the project; stdout/stderr go to <log>.out / <log>.err."""
        out = open(self.root / f"{log}.out", "wb")  # noqa: SIM115 (closed with the process)
        err = open(self.root / f"{log}.err", "wb")  # noqa: SIM115
        return subprocess.Popen(
            [sys.executable, *argv],
            cwd=self.root,
            stdout=out,
            stderr=err,
            env={**child_env(), **(env or {})},
            start_new_session=True,
        )

    def run(
        self,
        *argv: str,
        log: str = "proc",
        env: dict[str, str] | None = None,
        timeout: float = 240,
    ) -> tuple[int, str, str]:
        """Run `python <argv>` to the end; return (returncode, stdout, stderr)."""
        proc = self.popen(*argv, log=log, env=env)
        try:
            code = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise
        return code, self.text(f"{log}.out"), self.text(f"{log}.err")

    def latent(self, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        """Run the `latent` command in a fresh process, in this project."""
        exe = Path(sys.executable).parent / "latent"
        return subprocess.run(
            [str(exe), *args],
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**child_env(), "COLUMNS": "200"},
        )

    def text(self, relative: str) -> str:
        path = self.root / relative
        return path.read_text(errors="replace") if path.exists() else ""


def child_env() -> dict[str, str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for var in ("LATENT_ENVIRONMENT", "LATENT_PROJECT_ROOT", "MLFLOW_TRACKING_URI"):
        env.pop(var, None)
    return env


def kill_when(
    proc: subprocess.Popen[bytes],
    ready: Callable[[], bool],
    *,
    timeout: float = 180,
    poll: float = 0.005,
) -> bool:
    """SIGKILL `proc` (and its children) as soon as `ready()`; False if it ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        if ready():
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(poll)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    raise AssertionError("the process never reached the kill point")


def line_count(path: Path) -> int:
    """Lines in a file (0 if absent), read fast enough to poll every few milliseconds."""
    try:
        with open(path, "rb") as fh:
            return fh.read().count(b"\n")
    except FileNotFoundError:
        return 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def no_traceback(stderr: str) -> bool:
    return "Traceback (most recent call last)" not in stderr
