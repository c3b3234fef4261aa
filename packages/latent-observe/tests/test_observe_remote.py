"""Spans of work done in another process join the flow's trace (`trace_link` / `continue_trace`).

The "worker" is a real Python subprocess that receives the pickled link, as a Dask or Ray
worker receives it inside a pickled task.
"""

from __future__ import annotations

import os
import pickle
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from latent.observe import (
    TraceLink,
    configure_tracking,
    continue_trace,
    flow_run,
    span,
    trace_link,
    tracking_warnings,
)

WORKER = textwrap.dedent(
    """
    import pickle, sys
    from latent.observe import continue_trace, flow_run, record_task, span

    link = pickle.loads(bytes.fromhex(sys.argv[1]))
    with continue_trace(link):
        with span("remote_work", "LLM", inputs={"question": "hi", "api_key": "sk-1"}) as s:
            with span("inner", "TOOL"):
                pass
            s.set_outputs("ok")
        record_task("remote_work", duration_s=1.0, success=True)
        with flow_run("sub", {"x": 1}):
            with span("in_sub"):
                pass
    print("worker done")
    """
)


def _run_worker(link: TraceLink | None, tmp_path: Path) -> str:
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    done = subprocess.run(
        [sys.executable, str(script), pickle.dumps(link).hex()],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


def test_spans_of_another_process_join_the_flows_trace(
    client: Any, tracking_uri: str, tmp_path: Path
) -> None:
    with flow_run("evaluate", {"n": 1}) as run:
        link = trace_link()
        assert link is not None
        assert (link.tracking_uri, link.run_id) == (tracking_uri, run.run_id)
        output = _run_worker(link, tmp_path)
    assert "worker done" in output
    assert "WARNING" not in output

    (trace,) = client.search_traces(locations=[run.experiment_id], run_id=run.run_id)
    spans = {s.name: s for s in trace.data.spans}
    assert set(spans) >= {"evaluate", "remote_work", "inner"}
    assert spans["evaluate"].parent_id is None
    assert spans["remote_work"].parent_id == spans["evaluate"].span_id
    assert spans["inner"].parent_id == spans["remote_work"].span_id
    assert spans["remote_work"].span_type == "LLM"
    assert spans["remote_work"].inputs == {"question": "hi", "api_key": "***"}
    assert spans["remote_work"].outputs == "ok"
    # metrics are the flow's process's job (it gets them back with the task's result)
    assert "task.remote_work.duration" not in client.get_run(run.run_id).data.metrics


def test_a_flow_run_inside_remote_work_nests_under_the_flows_run_and_trace(
    client: Any, tmp_path: Path
) -> None:
    with flow_run("evaluate") as run:
        _run_worker(trace_link(), tmp_path)

    (sub,) = client.search_runs(
        [run.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{run.run_id}'"
    )
    assert sub.data.tags["latent.flow"] == "sub"
    (trace,) = client.search_traces(locations=[run.experiment_id], run_id=run.run_id)
    spans = {s.name: s for s in trace.data.spans}
    assert spans["sub"].parent_id == spans["evaluate"].span_id
    assert spans["in_sub"].parent_id == spans["sub"].span_id


def test_no_link_outside_a_recorded_run() -> None:
    configure_tracking(enabled=False)
    assert trace_link() is None
    with flow_run("untracked"):
        assert trace_link() is None


def test_continue_trace_with_a_dead_store_runs_the_block_with_one_warning() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    link = TraceLink(
        tracking_uri=f"http://127.0.0.1:{port}",
        experiment_id="1",
        run_id="0" * 32,
        flow_name="evaluate",
        traceparent="00-" + "1" * 32 + "-" + "2" * 16 + "-01",
    )
    ran = []
    for _ in range(2):
        with continue_trace(link), span("work") as handle:
            ran.append(handle.active)
    assert ran == [False, False]
    warnings = [w for w in tracking_warnings() if f"127.0.0.1:{port}" in w]
    assert len(warnings) == 1
    assert "the tasks run without them" in warnings[0]


def test_continue_trace_without_a_link_is_a_no_op() -> None:
    with continue_trace(None), span("work") as handle:
        assert not handle.active
