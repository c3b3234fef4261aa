"""Fixtures of the scale-out tests: copies of the example project, flow loading, a Dask cluster.

Every test gets its own copy of `examples/qa-eval` (or a tiny project) in `tmp_path`, with
MLflow off (`LATENT_MLFLOW_ENABLED=0`): these tests are about engines and storage, and creating an
MLflow SQLite database per test would double their time.
"""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
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


@pytest.fixture
def tracked(monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow on for this test (the project's default local SQLite store under `.latent/`)."""
    monkeypatch.setenv("LATENT_MLFLOW_ENABLED", "1")


@dataclass
class TrackedRun:
    """What MLflow stored for one flow run: its metrics and the spans of its trace."""

    metrics: dict[str, float]
    history: Callable[[str], list[float]]
    spans: list[Any]

    def spans_named(self, name: str) -> list[Any]:
        """Spans of a task: named `name`, or `name[3] q-17` for a mapped row."""
        return [s for s in self.spans if s.name == name or s.name.startswith(name + "[")]


def tracked_runs(root: Path, flow: str) -> list[TrackedRun]:
    """The MLflow runs of `flow` in the project at `root`, oldest first, with their traces."""
    import mlflow

    from latent.config import Project

    project = Project.discover(cwd=root)
    client = mlflow.MlflowClient(project.tracking_uri)
    prefix = project.settings.mlflow.experiment_prefix
    experiment = client.get_experiment_by_name(prefix + flow)
    assert experiment is not None, f"no MLflow experiment {prefix + flow!r} in {root}"
    runs = client.search_runs([experiment.experiment_id], order_by=["start_time ASC"])
    traces = client.search_traces(locations=[experiment.experiment_id])
    out = []
    for run in runs:
        run_id = run.info.run_id
        spans = [
            span
            for trace in traces
            if trace.info.request_metadata.get("mlflow.sourceRun") == run_id
            for span in trace.data.spans
        ]
        out.append(
            TrackedRun(
                metrics=dict(run.data.metrics),
                history=lambda key, run_id=run_id: [
                    m.value for m in client.get_metric_history(run_id, key)
                ],
                spans=spans,
            )
        )
    return out


def assert_worker_spans_in_the_flows_trace(run: TrackedRun, flow: str, task: str, n: int) -> None:
    """`n` spans of `task`, each a child of the flow's root span, in one trace."""
    (root,) = [s for s in run.spans if s.parent_id is None]
    assert root.name == flow
    task_spans = run.spans_named(task)
    assert len(task_spans) == n
    assert {s.parent_id for s in task_spans} == {root.span_id}
    assert {s.trace_id for s in run.spans} == {root.trace_id}
    assert all(s.inputs for s in task_spans)


def assert_same_outputs(root: Path, expected_root: Path) -> None:
    """The example's `answers` and `scored` tables at `root` equal those at `expected_root`."""
    import pandas as pd

    for name in ("answers", "scored"):
        got, expected = (
            pd.read_parquet(r / "data" / "answer" / f"{name}.parquet").sort_values(
                "id", ignore_index=True
            )
            for r in (root, expected_root)
        )
        pd.testing.assert_frame_equal(got, expected)


def run_flow(flow: Any, *args: Any) -> tuple[Any, dict[tuple[str, str], int]]:
    """Run `flow`; return its result and `latent run`'s table: (task, status) -> calls."""
    from latent.prefect._summary import collect_summary

    with collect_summary() as summary:
        result = flow(*args)
    return result, {(r.task, r.status): r.count for r in summary.grouped()}


RESUME_FLOW = '''
from pathlib import Path

from latent.prefect import checkpoint, flow, task

LOG = Path(__file__).resolve().parents[2] / "calls.log"
FAIL = Path(__file__).resolve().parents[2] / "fail-after"


@task("judge_batch", cache=False, retry=False)
def judge_batch(batch: int) -> list[int]:
    """Three checkpointed verdicts per batch; batch 1 crashes after its 2nd while FAIL exists."""

    @checkpoint
    def verdict(batch: int, item: int) -> int:
        with LOG.open("a") as fh:
            fh.write(f"{batch}-{item}\\n")
        return batch * 10 + item

    out = []
    for item in range(3):
        out.append(verdict(batch, item))
        if batch == 1 and item == 1 and FAIL.exists():
            raise RuntimeError("worker lost its connection")
    return out


@flow("resume")
def resume() -> list[list[int]]:
    return [f.result() for f in judge_batch.map(batch=[0, 1, 2])]
'''


def resume_project(root: Path) -> Path:
    """A project whose flow `resume` checkpoints 3 verdicts per batch and fails once in batch 1."""
    (root / "config").mkdir(parents=True)
    (root / "config" / "latent.toml").write_text('environment = "dev"\n')
    (root / "flows" / "resume").mkdir(parents=True)
    (root / "flows" / "resume" / "flow.py").write_text(RESUME_FLOW)
    (root / "fail-after").touch()
    return root


def assert_checkpoints_resume(root: Path, flow: Any) -> None:
    """Run `resume` until it fails in batch 1, then again: only unfinished verdicts re-run."""
    with pytest.raises(Exception, match="worker lost its connection"):
        flow()
    first = (root / "calls.log").read_text().split()
    # batch 2 may or may not have run before the failed flow stopped its workers
    assert {"0-0", "0-1", "0-2", "1-0", "1-1"} <= set(first)
    assert "1-2" not in first

    (root / "fail-after").unlink()
    result = flow()
    assert result == [[0, 1, 2], [10, 11, 12], [20, 21, 22]]
    calls = (root / "calls.log").read_text().split()
    everything = {f"{b}-{i}" for b in range(3) for i in range(3)}
    # only the unfinished verdicts ran again, each once
    assert sorted(calls[len(first) :]) == sorted(everything - set(first))
    assert (root / ".latent" / "cache").is_dir()
