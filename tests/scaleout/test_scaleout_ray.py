"""Issue 6, point 8: the example evaluation on a local Ray cluster (prefect-ray), unchanged.

One Ray instance (2 CPUs) serves the module; `RayTaskRunner` finds it initialised and uses it,
as it would use a cluster given by address. The flow module is loaded the way `latent run`
loads it: as `latent_flows.<name>`, which Ray workers cannot import, so Latent ships it by
value with Ray's own cloudpickle.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from conftest import (
    assert_checkpoints_resume,
    assert_same_outputs,
    assert_worker_spans_in_the_flows_trace,
    load,
    resume_project,
    run_flow,
    tracked_runs,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A local Ray instance with 2 CPUs, started in an empty directory (workers find each
    project from the flow's source file, never from a stale working directory).

    Ray starts its workers with `uv run` when the driver was started by `uv run` (as `.ci/run`
    does), in a copy of the working directory: from the empty directory uv would resolve a
    bare Python without Ray. The workers use this interpreter instead.
    """
    os.environ["RAY_ENABLE_UV_RUN_RUNTIME_ENV"] = "0"  # read when `ray` is first imported
    import ray
    from ray._private import ray_constants

    ray_constants.RAY_ENABLE_UV_RUN_RUNTIME_ENV = False  # in case `ray` was imported before

    neutral = tmp_path_factory.mktemp("ray-cwd")
    before = os.getcwd()
    os.chdir(neutral)
    try:
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            object_store_memory=200 * 1024 * 1024,
            log_to_driver=False,
        )
    finally:
        os.chdir(before)
    try:
        yield
    finally:
        ray.shutdown()


def _ray_runner() -> Any:
    from prefect_ray import RayTaskRunner

    return RayTaskRunner()


def test_ray_results_equal_the_default_runner_and_the_cache_is_shared(
    example_copy: Any, ray_cluster: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    default_root, ray_root = example_copy("default"), example_copy("ray")
    monkeypatch.chdir(default_root)
    load(default_root, "answer")()

    monkeypatch.chdir(ray_root)
    flow = load(ray_root, "answer").with_options(task_runner=_ray_runner())
    _, table = run_flow(flow)
    assert table[("answer_question", "Completed")] == 8
    assert_same_outputs(ray_root, default_root)

    _, table = run_flow(flow)
    assert table.get(("answer_question", "Cached")) == 8
    assert ("answer_question", "Completed") not in table


def test_ray_spans_and_metrics_reach_the_flows_run(
    example_copy: Any, ray_cluster: None, tracked: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = example_copy("ray")
    monkeypatch.chdir(root)
    flow = load(root, "answer").with_options(task_runner=_ray_runner())
    run_flow(flow)

    (run,) = tracked_runs(root, "answer")
    assert_worker_spans_in_the_flows_trace(run, "answer", "answer_question", 8)
    assert run.metrics["task.answer_question.cache_misses"] == 8
    assert len(run.history("task.answer_question.duration")) == 8


def test_ray_checkpoints_resume_inside_worker_processes(
    tmp_path: Path, quiet_project_env: None, ray_cluster: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = resume_project(tmp_path / "proj")
    monkeypatch.chdir(root)
    flow = load(root, "resume").with_options(task_runner=_ray_runner())
    assert_checkpoints_resume(root, flow)
