"""Issue 6, point 7: the example evaluation on a local Dask cluster of 2 worker processes.

A user switches runner without editing the flow: `flow.with_options(task_runner=...)` on the
loaded flow object (a notebook, a script, or a Prefect deployment's entrypoint wrapper).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from conftest import load, load_for_dask, run_flow

pytestmark = pytest.mark.slow

DASK = {"n_workers": 2, "processes": True, "threads_per_worker": 1}


def _dask_runner(cluster: Any = None) -> Any:
    from prefect_dask import DaskTaskRunner

    if cluster is not None:
        return DaskTaskRunner(address=cluster.scheduler_address)
    return DaskTaskRunner(cluster_kwargs=DASK)


def _outputs(root: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    answers = pd.read_parquet(root / "data" / "answer" / "answers.parquet")
    scored = pd.read_parquet(root / "data" / "answer" / "scored.parquet")
    return answers.sort_values("id", ignore_index=True), scored.sort_values("id", ignore_index=True)


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
    load(default_root, "answer")()

    monkeypatch.chdir(dask_root)
    flow = load_for_dask(dask_root, "answer").with_options(task_runner=_dask_runner(dask_cluster))
    answers = flow()

    expected_answers, expected_scored = _outputs(default_root)
    got_answers, got_scored = _outputs(dask_root)
    pd.testing.assert_frame_equal(got_answers, expected_answers)
    pd.testing.assert_frame_equal(got_scored, expected_scored)
    assert sorted(answers["answer"]) == sorted(expected_answers["answer"])


def test_dask_second_run_hits_the_cache(
    example_copy: Any, dask_cluster: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = example_copy("dask")
    monkeypatch.chdir(root)
    flow = load_for_dask(root, "answer").with_options(task_runner=_dask_runner(dask_cluster))
    run_flow(flow)
    _, table = run_flow(flow)
    assert table.get(("answer_question", "Cached")) == 8
    assert ("answer_question", "Completed") not in table


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


def test_dask_checkpoints_resume_inside_worker_processes(
    tmp_path: Path, quiet_project_env: None, dask_cluster: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "proj"
    (root / "config").mkdir(parents=True)
    (root / "config" / "latent.toml").write_text('environment = "dev"\n')
    (root / "flows" / "resume").mkdir(parents=True)
    (root / "flows" / "resume" / "flow.py").write_text(RESUME_FLOW)
    (root / "fail-after").touch()
    monkeypatch.chdir(root)
    flow = load_for_dask(root, "resume").with_options(task_runner=_dask_runner(dask_cluster))

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
