"""Issue 6.5 and 6.6: MLflow faults and secrets, against a real `mlflow server` on 127.0.0.1.

One server process serves the module (starting one costs seconds): the first test runs a flow
while it is up and checks what MLflow stored (no secret in params, spans, the store's files or
logs), the second kills the server while a flow runs, the third runs with the server gone.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from reliability_project import ProjectDir, child_env, free_port

SECRETS = {
    "openai_api_key": "sk-PARAM-SECRET-1111",
    "password": "PW-SECRET-2222",
    "auth_token": "TOKEN-SECRET-3333",
    "call_key": "sk-ARG-SECRET-4444",
}


class MlflowServer:
    """A real `mlflow server` process (its own session, so the whole group can be killed)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        root.mkdir(parents=True, exist_ok=True)
        self.log = open(root / "server.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "mlflow"),
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--workers",
                "1",
                "--backend-store-uri",
                f"sqlite:///{root / 'mlflow.db'}",
                "--artifacts-destination",
                str(root / "artifacts"),
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=child_env(),
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError((self.root / "server.log").read_text())
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.3)
        raise AssertionError("mlflow server did not start")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.log.close()


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    server = MlflowServer(tmp_path_factory.mktemp("mlflow-server"))
    try:
        server.wait_ready()
        yield server
    finally:
        server.kill()


def _tracked(project: ProjectDir, url: str) -> None:
    (project.root / "config/latent.toml").write_text(
        f'environment = "dev"\n\n[mlflow]\nenabled = true\ntracking_uri = "{url}"\n'
    )


class Records(logging.Handler):
    """Every log record of Latent, Prefect and MLflow, formatted as a user would read it."""

    NAMES = ("", "latent", "prefect", "mlflow")

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    def __enter__(self) -> Records:
        import prefect  # noqa: F401  (Prefect configures its loggers on import)

        self._saved = []
        for name in self.NAMES:
            lg = logging.getLogger(name)
            self._saved.append((lg, lg.level))
            lg.setLevel(logging.DEBUG)
            lg.addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        for lg, level in self._saved:
            lg.removeHandler(self)
            lg.setLevel(level)


SECRET_FLOW = """
from latent.prefect import flow, logger, params, task

@task("call_llm", cache=False)
def call_llm(prompt: str, api_key: str, headers: dict) -> str:
    logger.info(f"calling the model for {prompt!r}")
    return prompt.upper()

@task("flaky_call", cache=False, retry=False)
def flaky_call(prompt: str, credentials: dict) -> str:
    raise ConnectionError("model endpoint refused the connection")

@flow("secretive")
def secretive():
    answers = [call_llm(p, api_key=params.call_key, headers={"x-api-key": params.call_key})
               for p in ("a", "b")]
    try:
        flaky_call("c", credentials={"password": params.database["password"]})
    except Exception as exc:
        logger.warning(f"flaky_call failed: {exc}")
    return answers
"""


def test_secrets_never_reach_mlflow_or_logs(
    project: ProjectDir, mlflow_server: MlflowServer, capfd: pytest.CaptureFixture[str]
) -> None:
    _tracked(project, mlflow_server.url)
    project.write(
        "config/global.yaml",
        f"openai_api_key: {SECRETS['openai_api_key']}\nauth_token: {SECRETS['auth_token']}\n",
    )
    project.flow(
        "secretive",
        SECRET_FLOW,
        parameters={
            "database": {"host": "db.local", "password": SECRETS["password"]},
            "call_key": SECRETS["call_key"],
            "max_tokens": 256,
        },
    )
    with Records() as records:
        assert project.load("secretive")() == ["A", "B"]
    out, err = capfd.readouterr()
    failed = [line for line in records.lines if "flaky_call failed" in line]
    assert failed and "model endpoint refused" in failed[0], failed  # the logs were captured

    import mlflow

    client = mlflow.MlflowClient(tracking_uri=mlflow_server.url)
    experiment = client.get_experiment_by_name("secretive")
    assert experiment is not None
    (run,) = client.search_runs([experiment.experiment_id])
    stored = run.data.params
    assert stored["openai_api_key"] == "***" and stored["database.password"] == "***"
    assert stored["auth_token"] == "***" and stored["call_key"] == "***"
    assert stored["max_tokens"] == "256" and stored["database.host"] == "db.local"

    traces = client.search_traces(locations=[experiment.experiment_id])
    spans = [s for t in traces for s in t.data.spans]
    assert {"secretive", "call_llm", "flaky_call"} <= {s.name for s in spans}, [
        (t.info.trace_id, [(s.name, s.status) for s in t.data.spans]) for t in traces
    ]
    span_text = " ".join(str(s.to_dict()) for s in spans)

    store_bytes = b"".join(p.read_bytes() for p in mlflow_server.root.rglob("*") if p.is_file())
    for name, secret in SECRETS.items():
        assert secret not in span_text, f"{name} in a span"
        assert secret.encode() not in store_bytes, f"{name} in the MLflow server's files"
        assert not [line for line in records.lines if secret in line], f"{name} in a log record"
        assert secret not in out + err, f"{name} on stdout/stderr"


MIDRUN_FLOW = """
import os, signal
from pathlib import Path
from latent.prefect import flow, task

@task("before", cache=False)
def before(x: int) -> int:
    return x + 1

@task("kill_tracking_server", cache=False)
def kill_tracking_server() -> None:
    pid = int((Path(__file__).resolve().parents[2] / "server.pid").read_text())
    os.killpg(pid, signal.SIGKILL)

@task("after", cache=False)
def after(x: int) -> int:
    return x * 10

@flow("midrun")
def midrun():
    values = [before(i) for i in range(3)]
    kill_tracking_server()
    return [after(v) for v in values] + [f.result() for f in after.map(x=values)]
"""


def _run_subprocess_flow(
    project: ProjectDir, flow: str, api_url: str, bound: float
) -> tuple[int, str, str, float]:
    """Run the flow in its own process; a process still running after `bound` s is killed."""
    project.script(f"run_{flow}.py", flow)
    started = time.monotonic()
    try:
        code, out, err = project.run(
            f"run_{flow}.py", log=flow, env={"PREFECT_API_URL": api_url}, timeout=bound
        )
    except subprocess.TimeoutExpired:
        raise AssertionError(
            f"the flow was still running {bound:g} s after it started; stderr so far:\n"
            + project.text(f"{flow}.err")[-3000:]
        ) from None
    return code, out, err, time.monotonic() - started


@pytest.mark.slow
def test_tracking_server_killed_mid_run(
    project: ProjectDir, mlflow_server: MlflowServer, prefect_api_url: str
) -> None:
    _tracked(project, mlflow_server.url)
    (project.root / "server.pid").write_text(str(mlflow_server.proc.pid))
    project.flow("midrun", MIDRUN_FLOW)
    # bounded delay: generous for a loaded 2-core machine; the healthy run takes a few seconds
    code, out, err, elapsed = _run_subprocess_flow(project, "midrun", prefect_api_url, bound=60)
    assert not mlflow_server.alive()
    assert code == 0, err
    assert "RESULT-LEN 6" in out
    latent_warnings = [line for line in err.splitlines() if "latent.observe" in line]
    assert len(latent_warnings) == 1, latent_warnings
    assert mlflow_server.url in latent_warnings[0]
    assert "Traceback" not in err, err
    print(f"killed-mid-run flow process took {elapsed:.1f} s")


def test_tracking_server_stopped_before_run(
    project: ProjectDir, mlflow_server: MlflowServer
) -> None:
    from latent.observe import tracking_warnings

    mlflow_server.kill()
    _tracked(project, mlflow_server.url)
    project.flow(
        "offline",
        """
        from latent.prefect import flow, task

        @task("double", cache=False)
        def double(x: int) -> int:
            return 2 * x

        @flow("offline")
        def offline():
            return [double(i) for i in range(3)] + [f.result() for f in double.map(x=[5, 6])]
        """,
    )
    seen = len(tracking_warnings())
    started = time.monotonic()
    assert project.load("offline")() == [0, 2, 4, 10, 12]
    elapsed = time.monotonic() - started
    new = tracking_warnings()[seen:]
    assert len(new) == 1, new
    assert mlflow_server.url in new[0] and "did not answer" in new[0]
    assert "LATENT_MLFLOW_ENABLED=0" in new[0]
    print(f"flow with the tracking server down took {elapsed:.1f} s")
