"""One real `mlflow server` on 127.0.0.1: a flow run recorded over HTTP and read back."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from latent.observe import configure_tracking, flow_run, record_task, span, tracking_warnings


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_healthy(url: str, process: subprocess.Popen[bytes], deadline_s: float) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"mlflow server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=1) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)  # polling a starting server; bounded by the deadline
    raise RuntimeError(f"mlflow server at {url} not healthy within {deadline_s}s")


@pytest.fixture
def server_url(tmp_path: Path, template_store: Path) -> Iterator[str]:
    store = tmp_path / "server.db"
    shutil.copyfile(template_store, store)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    command = [
        sys.executable, "-m", "mlflow", "server",
        "--host", "127.0.0.1", "--port", str(port),
        "--backend-store-uri", f"sqlite:///{store}",
        "--artifacts-destination", str(tmp_path / "artifacts"),
        "--workers", "1",
    ]  # fmt: skip
    log = (tmp_path / "server.log").open("wb")
    env = {**os.environ, "MLFLOW_TRACKING_URI": ""}
    # Own session: `mlflow server` starts uvicorn as a child, so stop the whole group we made.
    process = subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
    )
    try:
        _wait_healthy(url, process, deadline_s=240)
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


@pytest.mark.slow
def test_flow_run_over_http_is_read_back_through_the_client(server_url: str) -> None:
    from mlflow import MlflowClient

    configure_tracking(tracking_uri=server_url, experiment_prefix="srv-")
    before = len(tracking_warnings())

    with flow_run("served_flow", {"model": "gpt-4"}) as run:
        with span("retrieve", "RETRIEVER", inputs={"query": "q"}) as handle:
            handle.set_outputs(["d1", "d2"])
        with span("answer", "LLM"):
            record_task("answer", duration_s=0.25, success=True, rows_in=2, rows_out=1)

    client = MlflowClient(tracking_uri=server_url)
    experiment = client.get_experiment_by_name("srv-served_flow")
    recorded = client.get_run(run.run_id)
    (trace,) = client.search_traces(locations=[experiment.experiment_id])
    spans = {s.name: s for s in trace.data.spans}
    assert tracking_warnings()[before:] == []
    assert recorded.info.experiment_id == experiment.experiment_id
    assert recorded.info.status == "FINISHED"
    assert recorded.data.params == {"model": "gpt-4"}
    assert recorded.data.metrics["task.answer.duration"] == 0.25
    assert recorded.data.metrics["task.answer.rows_out"] == 1.0
    assert {name: s.span_type for name, s in spans.items()} == {
        "served_flow": "CHAIN",
        "retrieve": "RETRIEVER",
        "answer": "LLM",
    }
    assert spans["retrieve"].outputs == ["d1", "d2"]
