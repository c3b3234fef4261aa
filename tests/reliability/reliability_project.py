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
import time
from collections.abc import Callable
from pathlib import Path

from project_dir import LATENT_TOML, child_env
from project_dir import ProjectDir as BaseProjectDir

__all__ = [
    "LATENT_TOML",
    "ProjectDir",
    "child_env",
    "free_port",
    "kill_when",
    "line_count",
    "no_traceback",
]


class ProjectDir(BaseProjectDir):
    """A Latent project under tmp_path that a test writes, runs and breaks."""

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
