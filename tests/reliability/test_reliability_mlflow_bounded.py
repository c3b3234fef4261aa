"""Issue 16.3d: MLflow bounded, from the outside — real `latent run` processes, a real store.

Four first runs of a fresh project at once (the default SQLite store created by whichever
comes first), a parameters file of 10 MB, a tracking server that stops answering (SIGSTOP), and
a run killed mid-map whose MLflow and Prefect runs the next run marks as failed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from reliability_project import ProjectDir, child_env, no_traceback

TRACKED_TOML = 'environment = "dev"\n\n[mlflow]\nenabled = true\n'

MAPPED_FLOW = """
from latent.prefect import flow, task

@task("square")
def square(x: int) -> int:
    return x * x

@flow("mapped")
def mapped():
    return sum(f.result() for f in square.map(x=list(range(12))))
"""


def _latent(
    project: ProjectDir, *args: str, log: str, env: dict[str, str]
) -> subprocess.Popen[bytes]:
    """`latent <args>` in its own process group; output to <log>.out / <log>.err."""
    out = open(project.root / f"{log}.out", "wb")  # noqa: SIM115 (closed with the process)
    err = open(project.root / f"{log}.err", "wb")  # noqa: SIM115
    return subprocess.Popen(
        [str(Path(sys.executable).parent / "latent"), *args],
        cwd=project.root,
        stdout=out,
        stderr=err,
        env={**child_env(), "COLUMNS": "200", **env},
        start_new_session=True,
    )


def _wait(proc: subprocess.Popen[bytes], timeout: float = 600) -> int:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise


def _client(project: ProjectDir) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{project.root / '.latent' / 'mlflow.db'}")


def _runs(client: Any, experiment: str) -> list[Any]:
    found = client.get_experiment_by_name(experiment)
    return [] if found is None else list(client.search_runs([found.experiment_id]))


def _spans_of(client: Any, run: Any) -> list[str]:
    traces = client.search_traces(
        locations=[run.info.experiment_id],
        filter_string=f"metadata.`mlflow.sourceRun` = '{run.info.run_id}'",
    )
    return sorted(span.name for trace in traces for span in trace.data.spans)


@pytest.mark.slow
def test_four_first_runs_of_a_fresh_project_all_record(
    project: ProjectDir, prefect_api_url: str
) -> None:
    project.write("config/latent.toml", TRACKED_TOML)
    project.flow("mapped", MAPPED_FLOW)
    assert not (project.root / ".latent" / "mlflow.db").exists()
    env = {"PREFECT_API_URL": prefect_api_url}
    procs = [_latent(project, "run", "mapped", log=f"r{i}", env=env) for i in range(4)]
    codes = [_wait(p) for p in procs]
    for i, code in enumerate(codes):
        out, err = project.text(f"r{i}.out"), project.text(f"r{i}.err")
        assert code == 0, out + err
        assert no_traceback(out + err), out + err
        assert "database is locked" not in out + err
        assert "did not take" not in out + err  # every run's writes were done before exit
        assert "Flushing the async trace logging queue" not in out + err  # MLflow INFO: -v only

    runs = _runs(_client(project), "mapped")
    assert len(runs) == 4
    assert {run.info.status for run in runs} == {"FINISHED"}
    for run in runs:
        assert run.data.metrics, run.info.run_id  # the end's metric flush happened
        spans = _spans_of(_client(project), run)
        # the flow's root span and one span per row of the map, in every run
        assert spans == sorted(["mapped", *(f"square[{i}]" for i in range(12))]), spans


STOPPING_FLOW = """
import os, signal, time
from pathlib import Path
from latent.prefect import flow, task

@task("before", cache=False)
def before(x: int) -> int:
    return x + 1

@task("stop_tracking_server", cache=False)
def stop_tracking_server() -> None:
    from latent.observe import current_run
    assert current_run().active  # the flow's MLflow run is open: it is left behind RUNNING
    pid = int((Path(__file__).resolve().parents[2] / "server.pid").read_text())
    os.killpg(pid, signal.SIGSTOP)
    (Path(__file__).resolve().parents[2] / "stopped_at").write_text(repr(time.time()))

@task("after", cache=False)
def after(x: int) -> int:
    return x * 10

@flow("stopping")
def stopping():
    values = [f.result() for f in before.map(x=list(range(6)))]
    stop_tracking_server()
    return sum(f.result() for f in after.map(x=values))
"""


@pytest.mark.slow
def test_a_tracking_server_that_stops_answering_costs_a_bounded_exit(
    project: ProjectDir, prefect_api_url: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from test_reliability_mlflow import MlflowServer

    server = MlflowServer(tmp_path_factory.mktemp("stopped-server"))
    try:
        server.wait_ready()
        project.write(
            "config/latent.toml",
            f'environment = "dev"\n\n[mlflow]\nenabled = true\ntracking_uri = "{server.url}"\n',
        )
        (project.root / "server.pid").write_text(str(server.proc.pid))
        project.flow("stopping", STOPPING_FLOW)
        started = time.monotonic()
        proc = _latent(
            project, "run", "stopping", log="stop", env={"PREFECT_API_URL": prefect_api_url}
        )
        # generous for a loaded 2-core machine: unbounded, MLflow's retries held the exit ~12 min
        code = _wait(proc, timeout=180)
        elapsed = time.monotonic() - started
        after_stop = time.time() - float(project.text("stopped_at") or "nan")
    finally:
        if server.alive():
            os.killpg(server.proc.pid, signal.SIGCONT)
        server.kill()
    out, err = project.text("stop.out"), project.text("stop.err")
    assert code == 0, out + err
    assert "completed" in out
    assert no_traceback(out + err), out + err
    warnings = [line for line in (out + err).splitlines() if "WARNING" in line]
    assert len(warnings) == 1, warnings  # one line says what was not recorded, nothing else
    # which one depends on timing: the run's call timing out first (a writer that was ready at
    # once), or the bounded wait at exit (the call still pending); never both
    assert server.url in warnings[0]
    assert (
        "LATENT_MLFLOW_EXIT_TIMEOUT" in warnings[0] or "runs without MLflow tracking" in warnings[0]
    )
    # the run the server never heard the end of is left for the next `latent run` to mark
    assert [run["tracking_uri"] for run in _owned_runs(project)] == [server.url]
    print(
        f"flow process with a SIGSTOPped tracking server took {elapsed:.1f} s, "
        f"{after_stop:.1f} s of them after the SIGSTOP"
    )


KILLED_FLOW = """
import os, threading
from latent.prefect import flow, task

@task("slow_row")
def slow_row(x: int) -> int:
    count(f"row-{x}")
    if os.environ.get("BLOCK_ROWS") and x >= 3:
        threading.Event().wait()  # the first run is killed while these rows run
    return x + 1

@flow("killed")
def killed():
    return sum(f.result() for f in slow_row.map(x=list(range(8))))
"""


def _owned_runs(project: ProjectDir) -> list[dict[str, Any]]:
    import json

    found = []
    for path in (project.root / ".latent" / "runs").glob("*.json"):
        try:
            found.extend(json.loads(path.read_text())["runs"].values())
        except (OSError, ValueError, KeyError):
            continue  # being replaced
    return found


@pytest.mark.slow
def test_a_run_killed_mid_map_is_marked_failed_by_the_next_run(
    project: ProjectDir, prefect_api_url: str
) -> None:
    from prefect.client.orchestration import get_client
    from reliability_project import kill_when

    project.write("config/latent.toml", TRACKED_TOML)
    project.write("flows/killed/flow.py", KILLED_FLOW)
    project.write("flows/killed/parameters.yaml", "{}\n")
    env = {"PREFECT_API_URL": prefect_api_url}
    first = _latent(project, "run", "killed", log="first", env={**env, "BLOCK_ROWS": "1"})
    assert kill_when(
        first,
        lambda: (
            len(project.calls()) >= 4 and any("mlflow_run" in run for run in _owned_runs(project))
        ),
    )
    (owned,) = _owned_runs(project)  # what the killed process left: its runs, still open

    second = _latent(project, "run", "killed", log="second", env=env)
    assert _wait(second) == 0, project.text("second.out") + project.text("second.err")
    assert no_traceback(project.text("second.out") + project.text("second.err"))
    assert _owned_runs(project) == []  # the dead process's record is gone, and this one's

    dead = _client(project).get_run(owned["mlflow_run"])
    assert dead.info.status == "FAILED"
    assert "ended without finishing" in dead.data.tags["latent.crashed"]
    finished = [r for r in _runs(_client(project), "killed") if r.info.run_id != dead.info.run_id]
    assert [r.info.status for r in finished] == ["FINISHED"]
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(owned["prefect_flow_run"])
    assert flow_run.state is not None and flow_run.state.name == "Crashed"


@pytest.mark.slow
def test_a_ten_megabyte_parameters_file_is_logged_bounded(
    project: ProjectDir, prefect_api_url: str
) -> None:
    import json

    project.write("config/latent.toml", TRACKED_TOML)
    project.flow(
        "big", 'from latent.prefect import flow\n\n@flow("big")\ndef big():\n    return 1\n'
    )
    lines = []
    for group in range(200):
        lines.append(f"group_{group}:")
        lines += [f"  item_{i:04d}: value-{group}-{i}-{'x' * 24}" for i in range(860)]
    (project.root / "flows/big/parameters.yaml").write_text("\n".join(lines) + "\n")
    assert (project.root / "flows/big/parameters.yaml").stat().st_size > 8_000_000

    started = time.monotonic()
    proc = _latent(project, "run", "big", log="big", env={"PREFECT_API_URL": prefect_api_url})
    code = _wait(proc, timeout=600)  # was > 11 min: one MLflow param per key
    print(f"latent run with a 172,000-key parameters file took {time.monotonic() - started:.1f} s")
    assert code == 0, project.text("big.out") + project.text("big.err")

    (run,) = _runs(_client(project), "big")
    assert run.info.status == "FINISHED"
    assert len(run.data.params) == 200
    assert "200 of 172000 parameters" in run.data.tags["latent.params"]
    path = _client(project).download_artifacts(run.info.run_id, "params.json", str(project.root))
    stored = json.loads(Path(path).read_text())
    assert sum(len(group) for group in stored.values()) == 172_000
