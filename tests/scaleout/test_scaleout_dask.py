"""Issue 6, point 7: the example evaluation on a local Dask cluster of 2 worker processes.

A user switches runner without editing the flow: `flow.with_options(task_runner=...)` on the
loaded flow object (a notebook, a script, or a Prefect deployment's entrypoint wrapper).
"""

from __future__ import annotations

import sys
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

DASK = {"n_workers": 2, "processes": True, "threads_per_worker": 1}


def _dask_runner(cluster: Any = None) -> Any:
    from prefect_dask import DaskTaskRunner

    if cluster is not None:
        return DaskTaskRunner(address=cluster.scheduler_address)
    return DaskTaskRunner(cluster_kwargs=DASK)


def test_with_options_switches_runner_and_keeps_the_latent_flow(example_copy: Any) -> None:
    from prefect.task_runners import ThreadPoolTaskRunner

    flow = load(example_copy("proj"), "answer")
    switched = flow.with_options(task_runner=ThreadPoolTaskRunner(max_workers=2))
    assert isinstance(switched, type(flow))
    assert switched.spec == flow.spec
    assert isinstance(switched.task_runner, ThreadPoolTaskRunner)


def test_dask_runs_the_example_as_latent_run_loads_it(
    example_copy: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = example_copy("dask")
    monkeypatch.chdir(root)
    flow = load(root, "answer").with_options(task_runner=_dask_runner())
    answers = flow()
    assert len(answers) == 8


def test_dask_results_equal_the_default_runner(
    example_copy: Any, dask_cluster: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    default_root, dask_root = example_copy("default"), example_copy("dask")
    monkeypatch.chdir(default_root)
    expected = load(default_root, "answer")()

    monkeypatch.chdir(dask_root)
    flow = load(dask_root, "answer").with_options(task_runner=_dask_runner(dask_cluster))
    answers, table = run_flow(flow)

    # what ran in the workers reaches `latent run`'s table like what runs in threads
    assert table[("answer_question", "Completed")] == 8
    assert_same_outputs(dask_root, default_root)
    assert sorted(answers["answer"]) == sorted(expected["answer"])


def test_dask_second_run_hits_the_cache(
    example_copy: Any, dask_cluster: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = example_copy("dask")
    monkeypatch.chdir(root)
    flow = load(root, "answer").with_options(task_runner=_dask_runner(dask_cluster))
    run_flow(flow)
    _, table = run_flow(flow)
    assert table.get(("answer_question", "Cached")) == 8
    assert ("answer_question", "Completed") not in table


def test_dask_spans_and_metrics_reach_the_flows_run(
    example_copy: Any, dask_cluster: Any, tracked: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = example_copy("dask")
    monkeypatch.chdir(root)
    flow = load(root, "answer").with_options(task_runner=_dask_runner(dask_cluster))
    run_flow(flow)
    run_flow(flow)

    first, second = tracked_runs(root, "answer")
    # spans opened in the worker processes are children of the flow's span, in its trace
    assert_worker_spans_in_the_flows_trace(first, "answer", "answer_question", 8)
    # metrics of worker task runs are recorded on the flow's run, from the flow's process
    assert first.metrics["task.answer_question.cache_misses"] == 8
    assert first.metrics["task.answer_question.cache_hits"] == 0
    durations = first.history("task.answer_question.duration")
    assert len(durations) == 8 and all(d >= 0.01 for d in durations)  # the model sleeps 10 ms
    assert first.history("task.answer_question.rows_out") == [2.0] * 8  # (answer, model) pairs
    # the second run was answered by the cache in the flow's process: no task ran anywhere
    assert second.metrics["task.answer_question.cache_hits"] == 8
    assert second.metrics["task.answer_question.cache_misses"] == 0
    # (cached rows still show in its trace, as short spans marked cached)
    cached = second.spans_named("answer_question")
    assert len(cached) == 8
    assert all(s.attributes.get("latent.cache") == "hit" for s in cached)


def test_dask_checkpoints_resume_inside_worker_processes(
    tmp_path: Path, quiet_project_env: None, dask_cluster: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = resume_project(tmp_path / "proj")
    monkeypatch.chdir(root)
    flow = load(root, "resume").with_options(task_runner=_dask_runner(dask_cluster))
    assert_checkpoints_resume(root, flow)
