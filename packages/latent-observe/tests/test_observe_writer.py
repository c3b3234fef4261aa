"""MLflow's writes done by a writer process (`LATENT_MLFLOW_WRITER`): same records, other core.

The tracking tests of `test_observe_tracking` run again here with the writer forced on (this
test process imports MLflow itself, which would otherwise keep the writes in-process), and the
writer's own promises are checked: a flow process that never imports MLflow, nothing lost when
the writer dies or the flow's process is killed, and no writer left behind.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from latent.observe import _shared, _writer, flow_run, record_task, span, tracking_warnings


def _tracking_tests() -> Any:
    path = Path(__file__).with_name("test_observe_tracking.py")
    spec = importlib.util.spec_from_file_location("_latent_tracking_tests", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_tracking = _tracking_tests()  # the same assertions, with the writer process
test_a_failing_span_is_marked_error = _tracking.test_a_failing_span_is_marked_error
test_a_second_store_in_the_same_process_gets_its_own_runs = (
    _tracking.test_a_second_store_in_the_same_process_gets_its_own_runs
)
test_flow_run_records_experiment_run_params_and_tags = (
    _tracking.test_flow_run_records_experiment_run_params_and_tags
)
test_spans_in_worker_threads_attach_to_the_flow_trace = (
    _tracking.test_spans_in_worker_threads_attach_to_the_flow_trace
)
test_spans_nest_under_the_flow_trace_with_types_and_summaries = (
    _tracking.test_spans_nest_under_the_flow_trace_with_types_and_summaries
)
test_subflow_is_a_nested_run_and_a_failure_is_failed = (
    _tracking.test_subflow_is_a_nested_run_and_a_failure_is_failed
)
test_task_metrics_are_batched_and_cache_counts_logged = (
    _tracking.test_task_metrics_are_batched_and_cache_counts_logged
)
test_unreachable_server_runs_the_body_with_one_warning = (
    _tracking.test_unreachable_server_runs_the_body_with_one_warning
)


@pytest.fixture(autouse=True)
def _writer_process(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv(_writer.WRITER_ENV, "process")
    # a private writer process (test_observe_shared_writer runs these with the shared one)
    monkeypatch.setattr(_shared, "_directory", [])
    yield
    assert _writer.close_all(120.0)


def _writers() -> list[psutil.Process]:
    return [psutil.Process(b.pid) for b in _writer.ProcessBackend.all() if b.pid is not None]


def test_the_writes_are_done_by_another_process(client: Any) -> None:
    with flow_run("elsewhere", {"k": 1}) as run, span("step", "TOOL"):
        record_task("step", duration_s=0.5, success=True)
        writers = _writers()

    assert [w.pid != os.getpid() and w.is_running() for w in writers] == [True]
    recorded = client.get_run(run.run_id)
    assert (recorded.info.status, recorded.data.params["k"]) == ("FINISHED", "1")
    assert recorded.data.metrics["task.step.duration"] == 0.5
    assert run.trace_id and run.trace_id.startswith("tr-")  # asked of the writer, after the end
    assert _writer.close_all(60.0)
    assert not any(w.is_running() for w in writers)


def test_an_unknown_writer_setting_warns_and_uses_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(_writer.WRITER_ENV, "fork")
    assert _writer.use_writer(uses_mlflow=False)
    assert not _writer.use_writer(uses_mlflow=True)
    assert any("LATENT_MLFLOW_WRITER='fork'" in w for w in tracking_warnings())


def test_a_dead_writer_gives_one_warning_and_the_flow_runs(client: Any) -> None:
    before = len(tracking_warnings())  # the process's warnings: only this test's count
    with flow_run("orphaned") as run:
        assert run.active
        (writer,) = _writers()
        writer.kill()
        writer.wait(30)
        with span("after", "TOOL"):
            record_task("after", duration_s=0.1, success=True)
        result = "still here"

    assert result == "still here"
    warnings = [w for w in tracking_warnings()[before:] if "writer process" in w]
    assert len(warnings) == 1, warnings
    assert "is gone" in warnings[0] and "the flow runs without MLflow tracking" in warnings[0]


SCRIPT = """
import os, sys, time
from latent.observe import configure_tracking, flow_run, record_task, span, wait_for_tracking

configure_tracking(tracking_uri=sys.argv[1], experiment_prefix="test-")
with flow_run("script_flow", {{"rows": 3}}) as run:
    for index in range(3):
        with span(f"row-{{index}}", "TOOL"):
            record_task("row", duration_s=0.01, success=True)
    print("RUN", run.run_id, flush=True)
    print("MLFLOW_IMPORTED", "mlflow" in sys.modules, flush=True)
{ending}
"""


def _script(tmp_path: Path, ending: str) -> Path:
    path = tmp_path / "script.py"
    path.write_text(textwrap.dedent(SCRIPT.format(ending=ending)))
    return path


def test_a_flow_process_that_does_not_use_mlflow_never_imports_it(
    tmp_path: Path, tracking_uri: str, client: Any
) -> None:
    script = _script(tmp_path, 'print("MLFLOW_AT_END", "mlflow" in sys.modules)')
    env = {**os.environ, _writer.WRITER_ENV: "auto"}
    done = subprocess.run(
        [sys.executable, str(script), tracking_uri], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr
    lines = dict(line.split(" ", 1) for line in done.stdout.splitlines())
    assert lines["MLFLOW_IMPORTED"] == "False" and lines["MLFLOW_AT_END"] == "False"
    recorded = client.get_run(lines["RUN"])
    assert recorded.info.status == "FINISHED"
    assert len(client.get_metric_history(lines["RUN"], "task.row.duration")) == 3
    (trace,) = client.search_traces(locations=[recorded.info.experiment_id])
    assert sorted(s.name for s in trace.data.spans) == ["row-0", "row-1", "row-2", "script_flow"]


def test_a_killed_flow_process_leaves_no_writer_and_keeps_what_was_sent(
    tmp_path: Path, tracking_uri: str, client: Any
) -> None:
    # the flow's process dies (SIGKILL) inside the flow, after its writes were handed over
    script = _script(tmp_path, "    time.sleep(1.0); os.kill(os.getpid(), 9)")
    process = subprocess.Popen(
        [sys.executable, str(script), tracking_uri], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    run_id = process.stdout.readline().split()[1]
    children = psutil.Process(process.pid).children()
    assert process.wait(60) == -signal.SIGKILL
    _, alive = psutil.wait_procs(children, timeout=60)
    assert alive == []  # the writer saw its input close, wrote what it had, and ended
    recorded = client.get_run(run_id)
    assert recorded.data.params["rows"] == "3"
    assert recorded.info.status == "RUNNING"  # the next run of the project marks it FAILED


def test_the_writer_ignores_a_terminal_ctrl_c(tracking_uri: str) -> None:
    with flow_run("interrupted"):
        (writer,) = _writers()
        writer.send_signal(signal.SIGINT)
        time.sleep(0.5)
        assert writer.is_running()


def test_a_writer_that_cannot_start_leaves_the_writes_in_this_process(
    client: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-python-here"))
    with flow_run("here", {"k": 2}) as run, span("step", "TOOL"):
        pass

    assert _writers() == []
    recorded = client.get_run(run.run_id)
    assert (recorded.info.status, recorded.data.params["k"]) == ("FINISHED", "2")
    (trace,) = client.search_traces(locations=[recorded.info.experiment_id])
    assert sorted(s.name for s in trace.data.spans) == ["here", "step"]
    (warning,) = [w for w in tracking_warnings() if "could not start" in w]
    assert "no-python-here" in warning and "LATENT_MLFLOW_WRITER=thread" in warning


def test_a_flow_that_outruns_its_writer_waits_for_it_and_loses_nothing(
    client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    monkeypatch.setattr(_writer, "MAX_QUEUED", 200)
    with flow_run("outrun") as run:
        assert run.active
        (writer,) = _writers()
        writer.suspend()  # the writer takes nothing: the pipe fills, then the queue

        def many_spans() -> None:
            for index in range(3000):
                with span(f"row-{index}", "TOOL"):
                    pass

        producer = threading.Thread(target=many_spans)
        producer.start()
        producer.join(3.0)
        assert producer.is_alive()  # waiting for room, not queueing without bound
        writer.resume()
        producer.join(120.0)
        assert not producer.is_alive()

    (trace,) = client.search_traces(locations=[run.experiment_id])
    assert len(trace.data.spans) == 1 + 3000
    assert not [w for w in tracking_warnings() if "dropped" in w]


def test_a_stuck_writer_never_hangs_the_flow(
    tracking_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_writer, "MAX_QUEUED", 200)
    monkeypatch.setattr(_writer, "QUEUE_WAIT_S", 0.5)
    with flow_run("stuck") as run:
        assert run.active
        (writer,) = _writers()
        writer.suspend()
        started = time.monotonic()
        for index in range(3000):
            with span(f"row-{index}", "TOOL"):
                pass
        waited = time.monotonic() - started
        writer.resume()

    assert waited < 60.0  # one bounded wait, then the rest is dropped at once
    (warning,) = [w for w in tracking_warnings() if "dropped until it catches up" in w]
    assert "took no spans for 0.5 s" in warning
