"""Runs ended in the background (`defer_run_end`, what `latent run` does) and the bounded wait
for them (`wait_for_tracking`), against a real MLflow SQLite store."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from latent.observe import (
    _background,
    defer_run_end,
    flow_run,
    record_task,
    span,
    tracking_warnings,
    wait_for_tracking,
)


@pytest.fixture
def deferred() -> Iterator[None]:
    defer_run_end()
    try:
        yield
    finally:
        wait_for_tracking(30)
        defer_run_end(False)


def _hold_background() -> threading.Event:
    """Keep the background thread busy until the returned event is set."""
    release = threading.Event()
    _background.submit(lambda: release.wait(60))
    return release


def test_a_flow_ends_without_waiting_for_its_run_to_be_written(client: Any, deferred: None) -> None:
    with flow_run("warm"):  # MLflow imported and the store open: the next run is quick to open
        pass
    assert wait_for_tracking(60)
    release = threading.Event()
    try:
        with flow_run("quick", {"n": 3}) as run:
            assert run.wait_ready()
            release = _hold_background()
            with span("step"):
                record_task("step", duration_s=0.1, success=True)
        # the flow is over while the background thread could not end its run yet
        assert not run.recording
        assert client.get_run(run.run_id).info.status == "RUNNING"
    finally:
        release.set()
    assert wait_for_tracking(60)
    recorded = client.get_run(run.run_id)
    assert recorded.info.status == "FINISHED"
    assert recorded.data.params == {"n": "3"}
    assert recorded.data.metrics["task.step.duration"] == 0.1
    (trace,) = client.search_traces(locations=[run.experiment_id])
    assert sorted(s.name for s in trace.data.spans) == ["quick", "step"]


def test_the_wait_at_the_end_is_bounded_and_warns_once(client: Any, deferred: None) -> None:
    release = threading.Event()
    try:
        with flow_run("stuck") as run:
            assert run.wait_ready()
            release = _hold_background()
        seen = len(tracking_warnings())
        assert not wait_for_tracking(0.2)
        assert not wait_for_tracking(0.2)
        new = tracking_warnings()[seen:]
        assert len(new) == 1, new
        assert "LATENT_MLFLOW_EXIT_TIMEOUT" in new[0] and "0.2 s" in new[0]
    finally:
        release.set()
    assert wait_for_tracking(60)
    assert client.get_run(run.run_id).info.status == "FINISHED"


def test_params_are_bounded_and_all_of_them_are_an_artifact(client: Any, tmp_path: Any) -> None:
    import json

    params = {f"group{g}": {f"item{k}": k for k in range(100)} for g in range(30)}
    params["api_key"] = "sk-live-123"
    with flow_run("many_params", params) as run:
        pass
    recorded = client.get_run(run.run_id)
    assert len(recorded.data.params) == 200
    assert recorded.data.params["group0.item0"] == "0"
    assert "200 of 3001 parameters" in recorded.data.tags["latent.params"]
    path = client.download_artifacts(run.run_id, "params.json", str(tmp_path))
    stored = json.loads(Path(path).read_text())
    assert stored["group29"]["item99"] == 99
    assert stored["api_key"] == "***"


def test_few_params_need_no_artifact(client: Any) -> None:
    with flow_run("few_params", {"a": 1, "b": {"c": "x"}}) as run:
        pass
    recorded = client.get_run(run.run_id)
    assert recorded.data.params == {"a": "1", "b.c": "x"}
    assert "latent.params" not in recorded.data.tags
    assert client.list_artifacts(run.run_id) == []


def test_a_run_ended_inside_runs_end_after_is_ended_when_the_block_exits(client: Any) -> None:
    from latent.observe import runs_end_after

    with flow_run("warm"):  # MLflow imported and the store open
        pass
    assert wait_for_tracking(60)
    release = threading.Event()
    try:
        with runs_end_after():
            with flow_run("caller", {"n": 1}) as run:
                assert run.wait_ready()
                release = _hold_background()
                with flow_run("child") as child:  # a subflow ends where it ends, as before
                    record_task("step", duration_s=0.2, success=True)
                assert client.get_run(child.run_id).info.status == "FINISHED"
                record_task("step", duration_s=0.1, success=True)
            # the caller's own end (Prefect's) goes on while the run's end waits its turn
            assert client.get_run(run.run_id).info.status == "RUNNING"
            release.set()
        # the block's exit waited for the end: ended, metrics and spans written
        recorded = client.get_run(run.run_id)
        assert recorded.info.status == "FINISHED"
        assert recorded.data.metrics["task.step.duration"] == 0.1
        traces = client.search_traces(locations=[run.experiment_id])
        assert {s.name for trace in traces for s in trace.data.spans} >= {"caller", "child"}
    finally:
        release.set()


def test_a_failing_run_inside_runs_end_after_ends_failed(client: Any) -> None:
    from latent.observe import runs_end_after

    with pytest.raises(ValueError, match="boom"), runs_end_after(), flow_run("failing") as run:
        assert run.wait_ready()
        raise ValueError("boom")
    assert client.get_run(run.run_id).info.status == "FAILED"
