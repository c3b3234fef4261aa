"""The shared writer (`latent.observe._shared`): MLflow imported once, a writer forked per run.

The writer-process tests of `test_observe_writer` (and through them the tracking tests) run
again here with writers forked by a shared writer, and its own promises are checked: one
shared writer for many runs and for two processes that start at once, a dead or stuck one
replaced, the forked writer working in the flow process's directory, a killed flow process
losing nothing, an idle one exiting, and `stop_shared_writers`.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from latent.observe import (
    _shared,
    _writer,
    flow_run,
    share_writers,
    shared_writers,
    span,
    stop_shared_writers,
)


def _load(name: str) -> Any:
    path = Path(__file__).with_name(f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"_latent_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_writer_tests = _load("test_observe_writer")
_tracking = _writer_tests._tracking
# the same assertions, each run's writer forked by the shared writer (back-pressure is the
# client's queue either way: test_observe_writer tests it with a pipe, whose size it knows)
test_a_failing_span_is_marked_error = _tracking.test_a_failing_span_is_marked_error
test_a_second_store_in_the_same_process_gets_its_own_runs = (
    _tracking.test_a_second_store_in_the_same_process_gets_its_own_runs
)
test_task_metrics_are_batched_and_cache_counts_logged = (
    _tracking.test_task_metrics_are_batched_and_cache_counts_logged
)
test_the_writes_are_done_by_another_process = (
    _writer_tests.test_the_writes_are_done_by_another_process
)
test_a_dead_writer_gives_one_warning_and_the_flow_runs = (
    _writer_tests.test_a_dead_writer_gives_one_warning_and_the_flow_runs
)
test_the_writer_ignores_a_terminal_ctrl_c = _writer_tests.test_the_writer_ignores_a_terminal_ctrl_c

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")


@pytest.fixture(scope="module")
def writer_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One shared writer for the module's tests (stopped at the end), as runs share one."""
    directory = Path(tmp_path_factory.mktemp("writers"))
    yield directory
    stop_shared_writers(directory)


@pytest.fixture(autouse=True)
def _shared_writer(monkeypatch: pytest.MonkeyPatch, writer_dir: Path) -> Iterator[None]:
    monkeypatch.setenv(_writer.WRITER_ENV, "process")
    monkeypatch.setattr(_shared, "_directory", [])
    share_writers(writer_dir)
    yield
    assert _writer.close_all(120.0)


def _backend() -> _writer.ProcessBackend:
    (backend,) = _writer.ProcessBackend.all()
    return backend


def test_runs_share_one_writer_process_and_each_gets_a_writer_of_its_own(
    client: Any, writer_dir: Path
) -> None:
    writers = []
    for index in range(2):
        with flow_run(f"run{index}", {"k": index}) as run, span("step", "TOOL"):
            backend = _backend()
            assert backend.shared
            writers.append(backend.pid)
        assert _writer.close_all(60.0)
        assert client.get_run(run.run_id).data.params["k"] == str(index)
    (zygote,) = shared_writers(writer_dir)
    assert writers[0] != writers[1] and zygote not in writers
    (sock,) = writer_dir.glob("*.sock")  # messages are pickles: no other user may connect
    assert stat.S_IMODE(sock.stat().st_mode) & 0o077 == 0
    assert psutil.Process(zygote).is_running()
    assert not any(psutil.pid_exists(pid) for pid in writers if pid)  # each ended with its run


def test_the_forked_writer_works_in_the_flow_process_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from latent.observe import configure_tracking

    monkeypatch.chdir(tmp_path)
    configure_tracking(tracking_uri="sqlite:///relative.db", experiment_prefix="test-")
    with flow_run("here") as run:
        assert _backend().shared
    assert _writer.close_all(60.0)
    assert run.run_id and (tmp_path / "relative.db").is_file()


def test_a_killed_shared_writer_is_replaced_by_the_next_run(client: Any, writer_dir: Path) -> None:
    with flow_run("before"):
        pass
    assert _writer.close_all(60.0)
    (old,) = shared_writers(writer_dir)
    os.kill(old, signal.SIGKILL)
    psutil.wait_procs([psutil.Process(old)], timeout=30)
    assert list(writer_dir.glob("*.sock"))  # its socket is left behind, refusing connections

    with flow_run("after", {"k": 1}) as run:
        assert _backend().shared
    assert _writer.close_all(60.0)
    (new,) = shared_writers(writer_dir)
    assert new != old
    assert client.get_run(run.run_id).data.params["k"] == "1"


def test_a_stuck_shared_writer_is_stopped_and_replaced(
    client: Any, writer_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with flow_run("before"):
        pass
    assert _writer.close_all(60.0)
    (stuck,) = shared_writers(writer_dir)
    os.kill(stuck, signal.SIGSTOP)  # accepts nothing: a run must not wait for it for long
    monkeypatch.setattr(_shared, "HELLO_WAIT_S", 1.0)
    with flow_run("meanwhile", {"k": 2}) as run:
        assert _backend().shared
    assert _writer.close_all(60.0)
    assert client.get_run(run.run_id).data.params["k"] == "2"
    _, alive = psutil.wait_procs([psutil.Process(stuck)], timeout=30)
    assert alive == []  # stopped after a second of silence
    (new,) = shared_writers(writer_dir)
    assert new != stuck


TWO_AT_ONCE = """
import sys, time
from latent.observe import configure_tracking, flow_run, share_writers, span

share_writers(sys.argv[2])
configure_tracking(tracking_uri=sys.argv[1], experiment_prefix="test-")
with flow_run(sys.argv[3], {"rows": 2}) as run:
    for index in range(2):
        with span(f"row-{index}", "TOOL"):
            pass
    print("RUN", run.run_id, flush=True)
    if sys.argv[4] == "kill":
        time.sleep(1.0)
        import os
        os.kill(os.getpid(), 9)
"""


def _script(tmp_path: Path) -> Path:
    path = tmp_path / "two.py"
    path.write_text(textwrap.dedent(TWO_AT_ONCE))
    return path


def test_two_processes_starting_at_once_share_one_new_writer(
    tmp_path: Path, tracking_uri: str, client: Any
) -> None:
    directory = tmp_path / "fresh"  # no shared writer yet: both want to start it
    env = {**os.environ, _writer.WRITER_ENV: "auto"}
    script = _script(tmp_path)
    processes = [
        subprocess.Popen(
            [sys.executable, str(script), tracking_uri, str(directory), f"p{i}", "end"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for i in range(2)
    ]
    try:
        outputs = [process.communicate(timeout=240) for process in processes]
        assert [process.returncode for process in processes] == [0, 0], outputs
        assert len(shared_writers(directory)) == 1
        for out, _ in outputs:
            run_id = out.split()[1]
            recorded = client.get_run(run_id)
            assert (recorded.info.status, recorded.data.params["rows"]) == ("FINISHED", "2")
    finally:
        stop_shared_writers(directory)


def test_a_killed_flow_process_loses_nothing_it_sent_and_leaves_the_shared_writer(
    tmp_path: Path, tracking_uri: str, client: Any, writer_dir: Path
) -> None:
    script = _script(tmp_path)
    process = subprocess.Popen(
        [sys.executable, str(script), tracking_uri, str(writer_dir), "killed", "kill"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, _writer.WRITER_ENV: "auto"},
    )
    assert process.stdout is not None
    run_id = process.stdout.readline().split()[1]
    (zygote,) = shared_writers(writer_dir)
    forked = {child.pid for child in psutil.Process(zygote).children()}
    assert process.wait(60) == -signal.SIGKILL
    _, alive = psutil.wait_procs([psutil.Process(pid) for pid in forked], timeout=60)
    assert alive == []  # the run's writer saw its connection close, wrote, and ended
    assert psutil.Process(zygote).is_running()
    recorded = client.get_run(run_id)
    assert recorded.data.params["rows"] == "2"
    assert recorded.info.status == "RUNNING"  # the next run of the project marks it FAILED


def test_an_idle_shared_writer_exits_and_removes_its_socket(
    tmp_path: Path, tracking_uri: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "idle"
    share_writers(directory)
    monkeypatch.setenv(_shared.IDLE_ENV, "1")
    with flow_run("brief"):
        assert _backend().shared
        (zygote,) = shared_writers(directory)
    assert _writer.close_all(60.0)
    _, alive = psutil.wait_procs([psutil.Process(zygote)], timeout=60)
    assert alive == [] and not list(directory.glob("*.sock"))


def test_without_a_directory_or_with_private_the_writer_is_private(
    monkeypatch: pytest.MonkeyPatch, tracking_uri: str
) -> None:
    monkeypatch.setenv(_writer.WRITER_ENV, "private")
    with flow_run("mine"):
        assert not _backend().shared
    assert _writer.close_all(60.0)
    monkeypatch.setenv(_writer.WRITER_ENV, "process")
    share_writers(None)
    with flow_run("mine too"):
        assert not _backend().shared
