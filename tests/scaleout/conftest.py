"""Fixtures of the scale-out tests: copies of the example project, flow loading, a Dask cluster.

Every test gets its own copy of `examples/qa-eval` (or a tiny project) in `tmp_path`, with
MLflow off (`LATENT_MLFLOW_ENABLED=0`): these tests are about engines and storage, and creating an
MLflow SQLite database per test would double their time.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from latent.registry import TaskRegistry

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "qa-eval"
# Generated state of the example that a fresh copy must not inherit.
_GENERATED = ("data/answer", "data/metrics", "mlruns", ".latent")


def copy_example(dest: Path, max_questions: int | None = None) -> Path:
    """A fresh copy of examples/qa-eval at `dest` (no outputs, no caches)."""
    shutil.copytree(EXAMPLE, dest, ignore=shutil.ignore_patterns("__pycache__"))
    for rel in _GENERATED:
        shutil.rmtree(dest / rel, ignore_errors=True)
    if max_questions is not None:
        params = dest / "flows" / "answer" / "parameters.yaml"
        text = params.read_text().replace("max_questions: 100", f"max_questions: {max_questions}")
        params.write_text(text)
    return dest


def load(root: Path, name: str) -> Any:
    """The `@flow` of `root/flows/<name>/flow.py`, loaded the way `latent run` loads it."""
    from latent.config import Project
    from latent.prefect.cli import load_flow

    return load_flow(Project.discover(cwd=root), name)


def load_for_dask(root: Path, name: str) -> Any:
    """Like `load`, plus the user-side workaround that lets Dask ship the flow's functions.

    `latent run` imports a flow file as module `latent_flows.<name>`, which worker processes
    cannot import; telling cloudpickle to pickle that module by value sends the functions
    themselves instead of a reference.
    """
    import cloudpickle

    flow = load(root, name)
    cloudpickle.register_pickle_by_value(sys.modules[f"latent_flows.{name}"])
    return flow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def quiet_project_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LATENT_MLFLOW_ENABLED", "0")
    for var in ("LATENT_ENVIRONMENT", "LATENT_PROJECT_ROOT", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(var, raising=False)
    TaskRegistry.clear()


@pytest.fixture
def example_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, quiet_project_env: None
) -> Callable[[str], Path]:
    """Make named copies of the example (8 questions, so engine overhead stays small)."""

    def make(name: str) -> Path:
        return copy_example(tmp_path / name, max_questions=8)

    return make


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A local Dask cluster of 2 worker processes, shared by a module's tests.

    Workers start in an empty directory, so they find each project from the flow's source file
    (as a worker on another machine would from a shared checkout), never from a stale cwd.
    """
    from distributed import LocalCluster

    neutral = tmp_path_factory.mktemp("dask-cwd")
    before = os.getcwd()
    os.chdir(neutral)
    try:
        cluster = LocalCluster(
            n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None
        )
    finally:
        os.chdir(before)
    try:
        yield cluster
    finally:
        cluster.close()


def run_flow(flow: Any, *args: Any) -> tuple[Any, dict[tuple[str, str], int]]:
    """Run `flow`; return its result and `latent run`'s table: (task, status) -> calls."""
    from latent.prefect._runtime import collect_summary

    with collect_summary() as summary:
        result = flow(*args)
    return result, {(r.task, r.status): r.count for r in summary.grouped()}
