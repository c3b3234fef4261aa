"""Screenshots of where a run's results are: MLflow's run page and trace view, Prefect's flow run.

Copies `examples/qa-eval` to a temporary directory, starts a Prefect server (with its UI) on a
free port, runs `latent run answer metrics` against it, starts the MLflow UI with `latent ui`,
and photographs the pages with headless Chromium (Debian: `apt-get install chromium`). The PNGs
go to `docs/img/`. Every server it starts is stopped at the end.

    uv run --frozen python docs/screenshots.py [--out docs/img]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
WINDOW = "1440,1400"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait(url: str, timeout_s: float = 240) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)  # a starting server, bounded by the deadline
    raise RuntimeError(f"{url} did not answer within {timeout_s:g} s")


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    raise SystemExit("headless Chromium is needed: apt-get install -y chromium")


def _shoot(url: str, out: Path, wait_ms: int = 8000) -> None:
    subprocess.run(
        [
            _chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--window-size={WINDOW}",
            f"--virtual-time-budget={wait_ms}",
            f"--screenshot={out}",
            url,
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    print(f"{out}  <-  {url}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "img")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="latent-shots-") as tmp:
        project = Path(tmp) / "qa-eval"
        shutil.copytree(REPO / "examples" / "qa-eval", project)
        port = _free_port()
        env = {
            **os.environ,
            "PREFECT_HOME": str(Path(tmp) / "prefect"),
            "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "COLUMNS": "160",
        }
        env.pop("MLFLOW_TRACKING_URI", None)
        server = subprocess.Popen(
            [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            _wait(f"http://127.0.0.1:{port}/api/health")
            latent = str(BIN / "latent")
            subprocess.run([latent, "run", "answer", "metrics"], cwd=project, env=env, check=True)
            ui = subprocess.run(
                [latent, "ui", "--port", str(_free_port())],
                cwd=project,
                env=env,
                check=True,
                capture_output=True,
                text=True,
            )
            try:
                _photograph(project, ui.stdout, port, args.out)
            finally:
                subprocess.run([latent, "ui", "--stop"], cwd=project, env=env, check=False)
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)


def _photograph(project: Path, ui_output: str, prefect_port: int, out: Path) -> None:
    from mlflow import MlflowClient

    mlflow_url = next(
        line.split()[-1] for line in ui_output.splitlines() if line.startswith("MLflow UI:")
    )
    client = MlflowClient(tracking_uri=f"sqlite:///{project / '.latent' / 'mlflow.db'}")
    runs = {}
    for flow in ("answer", "metrics"):
        experiment = client.get_experiment_by_name(f"qa-eval/{flow}")
        (run,) = client.search_runs([experiment.experiment_id], max_results=1)
        runs[flow] = run
    metrics = runs["metrics"]
    _shoot(
        f"{mlflow_url}/#/experiments/{metrics.info.experiment_id}/runs/{metrics.info.run_id}",
        out / "mlflow-run.png",
    )
    answer = runs["answer"]
    (trace,) = client.search_traces(
        locations=[answer.info.experiment_id], run_id=answer.info.run_id, max_results=1
    )
    _shoot(
        f"{mlflow_url}/#/experiments/{answer.info.experiment_id}/traces"
        f"?selectedEvaluationId={trace.info.trace_id}",
        out / "mlflow-trace.png",
    )
    flow_run = metrics.data.tags["prefect.flow_run.id"]
    _shoot(
        f"http://127.0.0.1:{prefect_port}/runs/flow-run/{flow_run}?tab=Artifacts",
        out / "prefect-flow-run.png",
    )


if __name__ == "__main__":
    main()
